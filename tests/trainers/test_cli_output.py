"""What a user sees from a run: quiet by default, warnings that matter, a summary at the end."""

import os
import pathlib
import subprocess
import sys
import types

import pytest

from model_zoo.decoding import sampling
from tests.trainers import helpers
from trainers import console, gin_include_order, optimizers, run_checks, text_prediction

ROOT = pathlib.Path(__file__).parents[2]
BANNER = ("oneDNN", "cuInit", "absl::InitializeLog", "WARNING:absl", "FunctionDataset")
QUICK = [
    "--gin_file=gin/runs/quickstart.gin",
    "--gin.TRAIN_STEPS=2",
    "--gin.BATCH_SIZE=8",
    '--gin.TASK_FEATURE_LENGTHS={"targets": 32}',
    "--gin.EVAL_STEPS=1",
    "--gin.CHECKPOINT_PERIOD=2",
    "--gin.train.eval_baselines=None",
    "--gin.train.predict_length=12",
]


def _train(*argv: str) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k != "PODZOO_VERBOSE"}
  env["XLA_FLAGS"] = ""  # one CPU device, as a user's laptop
  return subprocess.run(
      [sys.executable, "-m", "trainers.train", *argv],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=600,
  )


@pytest.mark.slow
def test_a_run_is_quiet_warns_about_warmup_and_ends_with_samples_and_a_summary(tmp_path):
  result = _train(*QUICK, f"--gin.MODEL_DIR='{tmp_path}'")
  log = result.stdout + result.stderr
  assert result.returncode == 0, log
  assert not [line for line in log.splitlines() if any(b in line for b in BANNER)], log
  # The quickstart warms up over 50 steps; a 2-step run never reaches the peak rate.
  assert "WARNING: The learning rate warms up over 50 steps but TRAIN_STEPS=2" in result.stderr
  assert "--gin.linear_warmup_constant.warmup_steps" in result.stderr
  out = result.stdout
  prompts = [line for line in out.splitlines() if line.startswith("PROMPT: ")]
  assert prompts == [
      "PROMPT: In the beginning God",
      "PROMPT: And Abraham said",
      "PROMPT: And Joseph",
  ]
  assert out.count("  greedy -> ") == 3 and out.count(" sampled -> ") == 3
  summary = out[out.index("Done; last train loss") :]
  assert f"MODEL_DIR {tmp_path}" in summary and "checkpoints/ (steps 2)" in summary
  assert f"tensorboard --logdir {tmp_path}" in summary
  assert (tmp_path / "checkpoints" / "2").is_dir() and (tmp_path / "config.gin").is_file()


@pytest.mark.slow
def test_verbose_brings_the_libraries_logs_back(tmp_path):
  # Fails at the first setting check, after the gin file imported TensorFlow.
  quiet = _train(*QUICK, f"--gin.MODEL_DIR='{tmp_path}'", "--gin.TRAIN_STEPS=0")
  loud = _train(*QUICK, f"--gin.MODEL_DIR='{tmp_path}'", "--gin.TRAIN_STEPS=0", "--verbose")
  for result in (quiet, loud):
    assert result.returncode == 1 and "ERROR: TRAIN_STEPS=0" in result.stderr
  assert quiet.stderr.strip().splitlines() == [
      line for line in quiet.stderr.strip().splitlines() if line.startswith("ERROR: ")
  ]
  assert "absl::InitializeLog" in loud.stderr or "oneDNN" in loud.stderr


def test_an_include_that_rebinds_an_earlier_file_is_named():
  search = [str(ROOT)]
  small_then_quick = gin_include_order.include_rebindings(
      ["gin/models/decoder_only_small.gin", "gin/runs/quickstart.gin"], search
  )
  assert len(small_then_quick) == 1
  warning = small_then_quick[0]
  assert "--gin_file=gin/runs/quickstart.gin includes gin/models/decoder_only_tiny.gin" in warning
  assert "--gin_file=gin/models/decoder_only_small.gin bound" in warning
  assert "rebinds 7 setting(s)" in warning and "TransformerConfig.emb_dim" in warning
  # The model file last is a deliberate override of the quickstart's own lines: no warning
  # for those; its include of decoder_only.gin does rebind the quickstart's float32, though.
  quick_then_small = gin_include_order.include_rebindings(
      ["gin/runs/quickstart.gin", "gin/models/decoder_only_small.gin"], search
  )
  assert len(quick_then_small) == 1 and "TransformerConfig.dtype" in quick_then_small[0]
  assert "emb_dim" not in quick_then_small[0]
  # The same model again: only the quickstart's own float32 (from short_run.gin) differs.
  tiny_then_quick = gin_include_order.include_rebindings(
      ["gin/models/decoder_only_tiny.gin", "gin/runs/quickstart.gin"], search
  )
  assert len(tiny_then_quick) == 1 and "rebinds 1 setting(s)" in tiny_then_quick[0]
  assert "(TransformerConfig.dtype)" in tiny_then_quick[0]
  for files in (
      ["gin/runs/quickstart.gin", "gin/runs/eval.gin"],
      ["gin/runs/quickstart.gin", "gin/runs/infer.gin"],
      ["gin/models/decoder_only_tiny.gin", "gin/runs/pretrain.gin", "gin/runs/short_run.gin"],
  ):
    assert gin_include_order.include_rebindings(files, search) == [], files


def test_include_order_warning_is_logged_by_the_cli(tmp_path, caplog):
  from trainers import train  # pylint: disable=g-import-not-at-top

  code = train.main(
      [
          "--gin_file=gin/models/decoder_only_small.gin",
          *QUICK,
          f"--gin.MODEL_DIR='{tmp_path}'",
          "--gin.TRAIN_STEPS=0",  # stop right after the config is read
      ]
  )
  assert code == 1
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "includes gin/models/decoder_only_tiny.gin" in warnings[0]


@pytest.mark.parametrize(
    "schedule, steps, warns",
    [
        (optimizers.linear_warmup_rsqrt_decay(0.01, 10_000), 300, True),
        (optimizers.linear_warmup_rsqrt_decay(0.01, 10_000), 10_000, False),
        (optimizers.linear_warmup_constant(0.003, 50), 49, True),
        (optimizers.linear_warmup_constant(0.003, 50), 50, False),
        (optimizers.warmup_cosine_decay(0.003, 100), 99, True),
        (optimizers.constant_schedule(0.003), 1, False),
    ],
)
def test_warmup_longer_than_the_run_warns(schedule, steps, warns):
  warning = run_checks.warmup_warning(schedule, steps)
  assert (warning is not None) == warns
  if warns:
    assert (
        f"TRAIN_STEPS={steps}" in warning and f"--gin.{schedule.gin_name}.warmup_steps" in warning
    )


@pytest.mark.slow
def test_a_seeded_sample_repeats_and_depends_on_the_seed():
  trainer = helpers.make_trainer(num_devices=1)
  model, partitioner = trainer.model, trainer.partitioner
  params = trainer.init_state(helpers.shapes_of(helpers.synthetic_batch(0))).params

  class Letters:  # a vocabulary: id i <-> chr(ord('a') + i % 26), enough to compare texts

    def encode(self, text):
      return [2 + (ord(c) - ord("a")) % 60 for c in text]

    def decode(self, ids):
      return " ".join(map(str, ids))

  def sample(seed):
    return text_prediction.continue_prompts(
        model, params, partitioner, Letters(), ["abc", "de"], 16, sampling.Sampling(), seed
    )

  assert sample(0) == sample(0)
  assert sample(0) != sample(1)
  greedy = text_prediction.continue_prompts(model, params, partitioner, Letters(), ["abc"], 16)
  assert greedy == text_prediction.continue_prompts(
      model, params, partitioner, Letters(), ["abc"], 16, sampling.Sampling(temperature=0.0), 5
  )


def test_only_the_event_loop_errors_of_late_writes_are_hidden(monkeypatch):
  shown = []
  monkeypatch.setattr(sys, "__unraisablehook__", shown.append)
  monkeypatch.delenv("PODZOO_VERBOSE", raising=False)
  late_write = types.SimpleNamespace(exc_value=RuntimeError("Event loop is closed"))
  other = types.SimpleNamespace(exc_value=RuntimeError("a real problem"))
  console._unraisable_hook(late_write)
  console._unraisable_hook(other)
  assert shown == [other]
  monkeypatch.setenv("PODZOO_VERBOSE", "1")
  console._unraisable_hook(late_write)
  assert shown == [other, late_write]
