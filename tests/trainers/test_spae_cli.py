"""SPAE through the command lines: trained by trainers.train with gin/models/spae.gin and
gin/runs/spae.gin on the spae_tiny images, the codebook read from an LM run's checkpoint;
then read and written by that LM through trainers.spae_lm."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from tests.trainers import helpers
from tests.trainers.test_cli import run_cli, saved_state
from trainers import spae_lm

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
LM_VOCAB, LM_WIDTH = 8320, 16  # the pre-training vocabulary, a narrow LM
# gin/models/spae_frozen_lm_tiny.gin made the shape of tests/tiny.py's LM.
LM_FLAGS = [
    f"--gin.lm/TransformerConfig.emb_dim={LM_WIDTH}",
    "--gin.lm/TransformerConfig.num_heads=4",
    "--gin.lm/TransformerConfig.num_kv_heads=2",
    "--gin.lm/TransformerConfig.head_dim=8",
    "--gin.lm/TransformerConfig.mlp_dim=64",
    "--gin.lm/TransformerConfig.num_layers=2",
    "--gin.lm/TransformerConfig.dtype='float32'",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """(LM MODEL_DIR, its embedding table, the SPAE run's flags, its MODEL_DIR, train output)."""
  from tasks.spae import image_dataset  # TensorFlow: only when these tests run

  image_dataset.prepare("tiny")
  lm_dir = tmp_path_factory.mktemp("lm")
  model = helpers.tiny_model(vocab_size=LM_VOCAB, emb_dim=LM_WIDTH)
  table = np.asarray(helpers.save_trained_lm(lm_dir, model)["token_embedder"]["embedding"])
  spae_dir = tmp_path_factory.mktemp("spae")
  flags = [
      "--gin_file=gin/models/spae.gin",
      "--gin_file=gin/runs/pretrain.gin",
      "--gin_file=gin/mixtures/spae_digits.gin",
      "--gin_file=gin/runs/spae.gin",
      "--gin.MIXTURE_OR_TASK_NAME='spae_tiny'",
      f"--gin.INITIAL_CHECKPOINT_PATH='{lm_dir}'",
      f"--gin.MODEL_DIR='{spae_dir}'",
      f"--gin.SPAE_LM_EMBED_DIM={LM_WIDTH}",
      "--gin.SpaeConfig.channels=8",
      "--gin.SpaeConfig.num_res_blocks=0",
      "--gin.TRAIN_STEPS=3",
      "--gin.BATCH_SIZE=8",
  ]
  return str(lm_dir), table, flags, str(spae_dir)


def test_trains_from_the_lm_table_and_keeps_it(runs, capfd):
  lm_dir, table, flags, spae_dir = runs
  extra = ["--gin.EVAL_PERIOD=3", "--gin.EVAL_STEPS=1", "--gin.train.log_period=3"]
  code, out = run_cli(capfd, *flags, *extra)
  assert code == 0, out
  assert "mapped  codebook/embedding <- token_embedder/embedding" in out
  assert "images/s" in out and "eval step 3:" in out and "semantic_hit" in out
  assert "by reference codebook/embedding" in out
  # Not saved again: the step names the LM step that holds it (the spae_lm tests below read
  # it back through that reference and check it against the LM's table).
  assert "codebook" not in saved_state(spae_dir, 3)["params"]
  with open(os.path.join(spae_dir, "checkpoints", "3", "references", "metadata")) as f:
    reference = json.load(f)["codebook/embedding"]
  assert reference["state_dir"] == os.path.join(lm_dir, "checkpoints", "1", "state")
  assert reference["source"] == "token_embedder/embedding"
  assert tuple(reference["shape"]) == table.shape


def spae_lm_flags(runs, lm_dir=None):
  own_lm_dir, _, flags, _ = runs
  return [
      *flags,
      "--gin_file=gin/runs/spae_lm.gin",
      "--gin_file=gin/models/spae_frozen_lm_tiny.gin",
      f"--gin.LM_DIR='{lm_dir or own_lm_dir}'",
      *LM_FLAGS,
  ]


def test_the_lm_reads_and_writes_images(runs, tmp_path, capfd):
  _, _, _, spae_dir = runs
  saved_state(spae_dir, 3)  # the training test ran first
  image = tmp_path / "seven.png"
  Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(image)
  code = spae_lm.main(
      [
          *spae_lm_flags(runs),
          f"--gin.spae_lm.images=['{image}']",
          "--gin.spae_lm.classify_examples=8",
          "--gin.spae_lm.generate_words=['zwei', 'two']",
          "--gin.spae_lm.num_samples=3",
          "--gin.spae_lm.shot_pool=64",
      ]
  )
  out = capfd.readouterr().out
  assert code == 0, out
  with open(f"{spae_dir}/spae_lm/spae_lm.json") as f:
    report = json.load(f)
  assert [len(layer) for layer in report["images"][0]["tokens"]] == [1, 4, 16, 64]
  assert all(3 <= t < 8192 for layer in report["images"][0]["tokens"] for t in layer)
  classify = report["classify"]
  assert classify["examples"] == 8 and 0 <= classify["accuracy"] <= 1
  # The majority class of the 8 images classified: the first 8 of spae_tiny's validation split.
  import seqio  # TensorFlow: only when this test runs

  task = seqio.get_mixture_or_task("spae_tiny")
  ds = task.get_dataset({"image": 32, "targets": 4}, split="validation", shuffle=False)
  names = [tuple(ex["targets"]) for ex in ds.take(8).as_numpy_iterator()]
  assert classify["majority_class"] == pytest.approx(max(map(names.count, names)) / 8)
  assert sorted(classify["words"]) == sorted(set(classify["words"]))  # one entry per word
  assert "few-shot classification of 8 images" in out
  grid = np.asarray(Image.open(f"{spae_dir}/spae_lm/generated.png"))
  assert grid.shape == (2 + 2 * (128 + 2), 2 + 3 * (128 + 2), 3)  # 2 words x 3 samples
  recon = np.asarray(Image.open(f"{spae_dir}/spae_lm/reconstructions.png"))
  assert recon.shape == (2 + 1 * 130, 2 + 5 * 130, 3)  # the image and 4 depths


def test_another_lm_than_the_codebooks_is_refused(runs, tmp_path, capfd):
  other_dir = tmp_path / "other_lm"
  model = helpers.tiny_model(vocab_size=LM_VOCAB, emb_dim=LM_WIDTH)
  helpers.save_trained_lm(other_dir, model, steps=2)  # trained further: another table
  code = spae_lm.main([*spae_lm_flags(runs, str(other_dir)), "--gin.spae_lm.classify_examples=4"])
  err = capfd.readouterr().err
  assert code == 1 and "ERROR: The LM's input embeddings are not the SPAE model's codebook" in err
