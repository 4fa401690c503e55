"""Controlled decoding as users run it: a prefix scorer trained by `trainers.train` with
gin/runs/prefix_scorer.gin on a rollout task, then `trainers.infer` with
gin/runs/controlled_decoding.gin (token-wise and blockwise CD) or best-of-K by a task reward.

Every CLI output is compared with the same decoder run here, on parameters read straight
from the two runs' Orbax checkpoints, with the rng infer uses for its first batch.
"""

import contextlib
import functools
import io
import json
import math
import os

import gin
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from model_zoo import models, prefix_scorer
from model_zoo.decoding import controlled
from tasks import quickstart
from tasks.controlled import rewards, rollouts
from trainers import cli, gin_utils, infer, text_prediction, train

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LENGTH = 16
BATCH = 8
PROMPTS = ["In the beginning God", "And Abraham said"]
TASK = "cd_cli_test_rollouts"
COMMON = [
    "--gin_file=gin/runs/quickstart.gin",
    "--gin.TRAIN_STEPS=2",
    f"--gin.BATCH_SIZE={BATCH}",
    "--gin.train.eval_dataset_cfg=None",
    "--gin.train.predict_prompts=[]",
    "--gin.train.eval_baselines=None",
]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("base")
  assert train.main([*COMMON, f"--gin.MODEL_DIR='{path}'"]) == 0
  return path


@pytest.fixture(scope="module")
def scorer_dir(base_dir, tmp_path_factory):
  """A prefix scorer trained for 2 steps on 12 rollouts with their length rewards."""
  path = tmp_path_factory.mktemp("scorer")
  texts = quickstart.split_lines("train")[:12]
  file = path / "rollouts.jsonl"
  with open(file, "w", encoding="utf-8") as f:
    for i, text in enumerate(texts):
      n = 1 + i % LENGTH
      record = {
          "input": "",
          "output": text,
          "num_tokens": n,
          "rewards": {"length": math.log(n / LENGTH)},
      }
      f.write(json.dumps(record) + "\n")
  rollouts.register_rollout_task(TASK, str(file), "length", quickstart.quickstart_vocabulary())
  code = train.main(
      [
          *COMMON,
          "--gin_file=gin/runs/prefix_scorer.gin",
          f"--gin.MODEL_DIR='{path / 'run'}'",
          f"--gin.INITIAL_CHECKPOINT_PATH='{base_dir}'",
          f"--gin.MIXTURE_OR_TASK_NAME='{TASK}'",
          "--gin.TASK_FEATURE_LENGTHS={'inputs': 4, 'targets': 12}",
      ]
  )
  assert code == 0
  return path / "run"


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
  path.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
  return path


def run_infer(base_dir, prompts_file, output_dir, *extra) -> tuple[int, str, list[dict]]:
  flags = [
      *COMMON,
      "--gin_file=gin/runs/infer.gin",
      f"--gin.MODEL_DIR='{base_dir}'",
      f"--gin.infer.max_length={LENGTH}",
      f"--gin.infer.input_file='{prompts_file}'",
      f"--gin.infer.output_dir='{output_dir}'",
      *extra,
  ]
  out = io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    code = infer.main(flags)
  path = os.path.join(output_dir, "predict-2.jsonl")
  records = []
  if code == 0:
    with open(path, encoding="utf-8") as f:
      records = [json.loads(line) for line in f]
  return code, out.getvalue(), records


def restored(model_dir):
  return ocp.StandardCheckpointer().restore(os.path.join(model_dir, "checkpoints", "2", "state"))[
      "params"
  ]


def decode_here(base_dir, decoder):
  """(texts, scores) of `decoder` on PROMPTS, as infer's first batch decodes them."""
  vocabulary = quickstart.quickstart_vocabulary()
  model = base_model()
  batch = model.prompt_batch([vocabulary.encode(p) for p in PROMPTS], BATCH, LENGTH)
  rng = jax.random.fold_in(jax.random.PRNGKey(0), 0)
  predict = jax.jit(
      lambda params, batch, rng: model.predict_batch(params, batch, rng, decoder=decoder)
  )
  tokens, scores = predict(restored(base_dir), batch, rng)
  texts = [
      text_prediction.decode_tokens(vocabulary, row, model.eos_id) for row in np.asarray(tokens)
  ]
  return texts[: len(PROMPTS)], np.asarray(scores)[: len(PROMPTS)]


@functools.cache
def base_model() -> models.DecoderOnlyModel:
  """The quickstart's Model, built from its gin file as trainers.infer builds it."""
  gin.clear_config()
  cli.import_configurables()
  gin_utils.parse_gin(
      gin_utils.parse_flags(["--gin_file=gin/runs/quickstart.gin", "--gin.MODEL_DIR='unused'"])
  )
  model = models.DecoderOnlyModel()
  gin.clear_config()
  return model


def scorer_at(scorer_dir, weight: float) -> controlled.PrefixScorer:
  config = base_model().module.config
  model = prefix_scorer.PrefixScorerModel(prefix_scorer.PrefixScorerLM(config))
  return controlled.PrefixScorer(model, restored(scorer_dir), weight)


@pytest.mark.slow
def test_tokenwise_cd_from_gin_decodes_as_the_decoder_does_here(
    base_dir, scorer_dir, prompts_file, tmp_path
):
  code, log, records = run_infer(
      base_dir,
      prompts_file,
      tmp_path,
      "--gin_file=gin/runs/controlled_decoding.gin",
      f"--gin.SCORER_DIR='{scorer_dir}'",
      "--gin.CD_WEIGHT=2.0",
  )
  assert code == 0, log
  assert f"Restored prefix scorer step 2 of {scorer_dir} (lambda 2.0)" in log
  texts, scores = decode_here(
      base_dir, controlled.TokenwiseCD(scorers=[scorer_at(scorer_dir, 2.0)])
  )
  assert [r["output"] for r in records] == texts
  np.testing.assert_allclose([r["score"] for r in records], scores, atol=1e-4)
  unsteered, _ = decode_here(base_dir, controlled.TokenwiseCD(scorers=[scorer_at(scorer_dir, 0.0)]))
  assert unsteered != texts  # the scorer moved the samples


@pytest.mark.slow  # the token-wise test above covers infer's wiring in the default suite
def test_blockwise_and_best_of_k_from_gin(base_dir, scorer_dir, prompts_file, tmp_path):
  code, log, records = run_infer(
      base_dir,
      prompts_file,
      tmp_path / "blockwise",
      "--gin_file=gin/runs/controlled_decoding.gin",
      f"--gin.SCORER_DIR='{scorer_dir}'",
      "--gin.infer.decoder=@BlockwiseCD()",
      "--gin.BlockwiseCD.num_samples=3",
      "--gin.BlockwiseCD.block_length=2",
  )
  assert code == 0, log
  blockwise = controlled.BlockwiseCD(
      scorers=[scorer_at(scorer_dir, 1.0)], num_samples=3, block_length=2
  )
  texts, _ = decode_here(base_dir, blockwise)
  assert [r["output"] for r in records] == texts

  code, log, records = run_infer(
      base_dir,
      prompts_file,
      tmp_path / "best_of_k",
      "--gin.infer.decoder=@BestOfK()",
      "--gin.BestOfK.reward=@task_reward()",
      "--gin.task_reward.name='length'",
      "--gin.BestOfK.num_samples=4",
  )
  assert code == 0, log
  vocabulary = quickstart.quickstart_vocabulary()
  reward = rewards.jax_reward(rewards.get("length"), vocabulary, base_model().eos_id)
  texts, _ = decode_here(base_dir, controlled.BestOfK(reward, num_samples=4))
  assert [r["output"] for r in records] == texts


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--gin.CD_WEIGHT=-1.0"], "PrefixScorer.weight=-1.0 must be >= 0"),
        (
            ["--gin.BlockwiseCD.num_samples=0", "--gin.infer.decoder=@BlockwiseCD()"],
            "num_samples=0",
        ),
    ],
)
def test_bad_settings_exit_1_naming_them(
    base_dir, scorer_dir, prompts_file, tmp_path, extra, message
):
  code, log, _ = run_infer(
      base_dir,
      prompts_file,
      tmp_path,
      "--gin_file=gin/runs/controlled_decoding.gin",
      f"--gin.SCORER_DIR='{scorer_dir}'",
      *extra,
  )
  assert code == 1 and message in log, log


@pytest.mark.slow
def test_a_scorer_dir_without_a_checkpoint_exits_1_naming_it(base_dir, prompts_file, tmp_path):
  code, log, _ = run_infer(
      base_dir,
      prompts_file,
      tmp_path / "out",
      "--gin_file=gin/runs/controlled_decoding.gin",
      f"--gin.SCORER_DIR='{tmp_path / 'nothing'}'",
  )
  assert code == 1 and "No checkpoint in" in log and "nothing" in log, log
