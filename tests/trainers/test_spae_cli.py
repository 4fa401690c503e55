"""SPAE through the train command line: gin/models/spae.gin + gin/runs/spae.gin on the
spae_tiny images, the codebook read from an LM run's checkpoint."""

import numpy as np
import pytest

from tests.trainers import helpers
from tests.trainers.test_cli import run_cli, saved_state

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
LM_VOCAB, LM_WIDTH = 8320, 16  # the pre-training vocabulary, a narrow LM


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
  """An LM MODEL_DIR over the pre-training vocabulary, one step trained."""
  from tasks.spae import image_dataset  # TensorFlow: only when this test runs

  image_dataset.prepare("tiny")
  model_dir = tmp_path_factory.mktemp("lm")
  model = helpers.tiny_model(vocab_size=LM_VOCAB, emb_dim=LM_WIDTH)
  params = helpers.save_trained_lm(model_dir, model)
  return str(model_dir), np.asarray(params["token_embedder"]["embedding"])


def test_trains_from_the_lm_table_and_keeps_it(lm_dir, tmp_path, capfd):
  lm_path, table = lm_dir
  model_dir = tmp_path / "spae"
  code, out = run_cli(
      capfd,
      "--gin_file=gin/models/spae.gin",
      "--gin_file=gin/runs/pretrain.gin",
      "--gin_file=gin/mixtures/spae_digits.gin",
      "--gin_file=gin/runs/spae.gin",
      "--gin.MIXTURE_OR_TASK_NAME='spae_tiny'",
      f"--gin.INITIAL_CHECKPOINT_PATH='{lm_path}'",
      f"--gin.MODEL_DIR='{model_dir}'",
      f"--gin.SPAE_LM_EMBED_DIM={LM_WIDTH}",
      "--gin.SpaeConfig.channels=8",
      "--gin.SpaeConfig.num_res_blocks=0",
      "--gin.TRAIN_STEPS=3",
      "--gin.BATCH_SIZE=8",
      "--gin.EVAL_PERIOD=3",
      "--gin.EVAL_STEPS=1",
      "--gin.train.log_period=3",
  )
  assert code == 0, out
  assert "mapped  codebook/embedding <- token_embedder/embedding" in out
  assert "images/s" in out and "eval step 3:" in out and "semantic_hit" in out
  saved = saved_state(str(model_dir), 3)["params"]
  np.testing.assert_array_equal(saved["codebook"]["embedding"], table)
