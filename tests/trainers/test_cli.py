"""`python -m trainers.train` as users run it: the quickstart with overrides, resume, errors.

Runs main() in-process (one TensorFlow import for the whole file) on the real SeqIO
quickstart task, shrunk by overrides so each run takes seconds.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from trainers import train

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def quick_flags(model_dir, steps, *extra):
  return [
      "--gin_file=gin/runs/quickstart.gin",
      f"--gin.MODEL_DIR='{model_dir}'",
      f"--gin.TRAIN_STEPS={steps}",
      "--gin.BATCH_SIZE=8",
      '--gin.TASK_FEATURE_LENGTHS={"targets": 32}',
      "--gin.EVAL_STEPS=1",
      "--gin.CHECKPOINT_PERIOD=2",
      "--gin.train.predict_prompts=[]",
      "--gin.train.eval_baselines=None",
      *extra,
  ]


def run_cli(capfd, *argv):
  code = train.main(list(argv))
  out, err = capfd.readouterr()
  return code, out + err


def saved_state(model_dir, step):
  return ocp.StandardCheckpointer().restore(
      os.path.join(model_dir, "checkpoints", str(step), "state")
  )


def data_position(model_dir, step):
  with open(os.path.join(model_dir, "checkpoints", str(step), "data", "metadata")) as f:
    return json.load(f)


def assert_same_params(a, b):
  flat_a, flat_b = _flatten(a["params"]), _flatten(b["params"])
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_allclose(flat_a[key], flat_b[key], rtol=1e-6, atol=1e-7, err_msg=key)


def _flatten(tree, prefix=""):
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f"{prefix}/{k}"))
    return out
  return {prefix: np.asarray(tree)}


def test_quickstart_trains_writes_config_metrics_and_resumes_exactly(tmp_path, capfd):
  resumed, straight = tmp_path / "resumed", tmp_path / "straight"
  code, log = run_cli(capfd, *quick_flags(resumed, 4))
  assert code == 0, log
  assert (resumed / "config.gin").read_text().count("TRAIN_STEPS") >= 1
  assert "step 4/4" in log and "eval step 4" in log
  lines = (resumed / "train_metrics.jsonl").read_text().splitlines()
  assert json.loads(lines[-1])["step"] == 4 and "tokens_per_second" in json.loads(lines[-1])
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(resumed / "train"))

  code, log = run_cli(capfd, *quick_flags(resumed, 8))
  assert code == 0, log
  assert "Restored checkpoint at step 4" in log
  code, log = run_cli(capfd, *quick_flags(straight, 8))
  assert code == 0, log
  assert_same_params(saved_state(resumed, 8), saved_state(straight, 8))
  assert data_position(resumed, 8) == data_position(straight, 8) == {"train_batches": 8}


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_state(tmp_path, capfd):
  killed, straight = tmp_path / "killed", tmp_path / "straight"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  proc = subprocess.Popen(
      [sys.executable, "-m", "trainers.train", *quick_flags(killed, 1000)],
      stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL,
      env=env,
  )
  try:
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "4").exists():
      assert proc.poll() is None and time.time() < deadline, "the run never wrote checkpoint 4"
      time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.kill()
    proc.wait()
  latest = max(int(p) for p in os.listdir(killed / "checkpoints") if p.isdigit())
  target = latest + 2
  code, log = run_cli(capfd, *quick_flags(killed, target))
  assert code == 0 and f"Restored checkpoint at step {latest}" in log, log
  code, log = run_cli(capfd, *quick_flags(straight, target))
  assert code == 0, log
  assert_same_params(saved_state(killed, target), saved_state(straight, target))


@pytest.mark.slow
def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, capfd):
  code, log = run_cli(capfd, *quick_flags(tmp_path, 4))
  assert code == 0, log
  state_dir = tmp_path / "checkpoints" / "4" / "state"
  for root, _, files in os.walk(state_dir):  # damage every array file of step 4
    for name in files:
      if name not in ("_METADATA", "_CHECKPOINT_METADATA", "_sharding", "manifest.ocdbt"):
        with open(os.path.join(root, name), "r+b") as f:
          f.truncate(3)
  code, log = run_cli(capfd, *quick_flags(tmp_path, 6))
  assert code == 0, log
  assert "step 4" in log and "damaged" in log and "falling back" in log
  assert "Restored checkpoint at step 2" in log
  assert (tmp_path / "checkpoints" / "6").exists()


@pytest.mark.slow
def test_half_written_checkpoint_is_never_taken_as_latest(tmp_path, capfd):
  code, log = run_cli(capfd, *quick_flags(tmp_path, 2))
  assert code == 0, log
  partial = tmp_path / "checkpoints" / "4.orbax-checkpoint-tmp-123"
  shutil.copytree(tmp_path / "checkpoints" / "2", partial)
  code, log = run_cli(capfd, *quick_flags(tmp_path, 4))
  assert code == 0 and "Restored checkpoint at step 2" in log, log


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--gin.NOT_A_REAL_BINDING=3"], "NOT_A_REAL_BINDING"),
        (["--gin.TRAIN_STPES=3"], "Did you mean: TRAIN_STEPS"),
        (["--gin.TransformerConfig.emb_dimm=3"], "emb_dimm"),
        (["--gin.TransformerConfg.emb_dim=3"], "Did you mean: TransformerConfig"),
        (["--gin.MIXTURE_OR_TASK_NAME='kjv_genesis_lmm'"], "'kjv_genesis_lm'"),
        (["--gin.TransformerConfig.vocab_size=512"], "TransformerConfig.vocab_size=1024"),
        (["--gin.Partitioner.mesh_shape=(3, -1, 1, 1)"], "Partitioner.mesh_shape=(3, -1, 1, 1)"),
        (["--gin.BATCH_SIZE=12"], "BATCH_SIZE=12 is not divisible by the data-parallel size 8"),
        (
            [
                "--gin.MIXTURE_OR_TASK_MODULE='tests.trainers.empty_task'",
                "--gin.MIXTURE_OR_TASK_NAME='empty_lm'",
            ],
            "empty_lm",
        ),
        (["--gin.MIXTURE_OR_TASK_MODULE='no_such_module_xyz'"], "no_such_module_xyz"),
    ],
)
def test_user_errors_exit_nonzero_with_a_message_naming_the_fix(tmp_path, capfd, extra, message):
  code, log = run_cli(capfd, *quick_flags(tmp_path, 2, *extra))
  assert code == 1
  assert message in log
  assert "Traceback" not in log
  assert not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints")


def test_missing_gin_file_flag_and_missing_file(tmp_path, capfd):
  code, log = run_cli(capfd, f"--gin.MODEL_DIR='{tmp_path}'")
  assert code == 1 and "No --gin_file given" in log
  code, log = run_cli(capfd, "--gin_file=gin/runs/no_such_run.gin")
  assert code == 1 and "gin/runs/no_such_run.gin: file not found" in log


def test_model_dir_of_a_different_model_is_refused(tmp_path, capfd):
  code, log = run_cli(capfd, *quick_flags(tmp_path, 2))
  assert code == 0, log
  code, log = run_cli(capfd, *quick_flags(tmp_path, 4, "--gin.TransformerConfig.emb_dim=64"))
  assert code == 1
  assert "holds a checkpoint (step 2) of a different model" in log and "MODEL_DIR" in log
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]  # nothing lost or overwritten


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capfd):
  code, log = run_cli(
      capfd,
      *quick_flags(
          tmp_path,
          20,
          "--gin.linear_warmup_constant.learning_rate=1e30",
          "--gin.linear_warmup_constant.warmup_steps=1",
          "--gin.with_gradient_clipping.max_norm=None",
          "--gin.CHECKPOINT_PERIOD=1",
          "--gin.train.log_period=1",
      ),
  )
  assert code == 1
  assert "NaN" in log or "nan" in log or "inf" in log
  assert "last good checkpoint" in log or "no checkpoint was written" in log
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  for step in steps:
    params = _flatten(saved_state(tmp_path, step)["params"])
    assert all(np.isfinite(v).all() for v in params.values()), step


def test_a_bug_inside_a_step_shows_its_traceback(tmp_path, capfd, monkeypatch):
  """A KeyError is a coding bug, not a user's mistake: the user sees where it was raised."""

  def broken_step(self, state, batch):
    raise KeyError("decoder_target_tokens")

  monkeypatch.setattr(train.Trainer, "train_step", broken_step)
  code, log = run_cli(capfd, *quick_flags(tmp_path, 2))
  assert code == 1
  assert "Traceback (most recent call last)" in log
  assert "in broken_step" in log and "KeyError: 'decoder_target_tokens'" in log


def test_a_user_error_is_one_line_without_traceback(tmp_path, capfd):
  code, log = run_cli(capfd, *quick_flags(tmp_path, 2, "--gin.MIXTURE_OR_TASK_NAME='nope'"))
  errors = [line for line in log.splitlines() if line.startswith("ERROR: ")]
  assert code == 1 and len(errors) == 1 and "nope" in errors[0]
  assert "Traceback" not in log and "In call to configurable" not in log  # gin's context, cut


@pytest.mark.parametrize("entry", ["train", "eval", "infer"])
def test_help_prints_usage_macros_and_gin_files_and_exits_zero(entry):
  result = subprocess.run(
      [sys.executable, "-m", f"trainers.{entry}", "--help"],
      cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
      capture_output=True,
      text=True,
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith(f"usage: python -m trainers.{entry} --gin_file=FILE")
  assert "MODEL_DIR" in result.stdout and "ERROR" not in result.stdout + result.stderr
  runs = sorted(name for name in os.listdir("gin/runs") if name.endswith(".gin"))
  assert "asr_fusion.gin" in runs and "pretrain.gin" in runs
  assert f"gin/runs/: {', '.join(runs)}" in result.stdout
  assert "gin/models/:" in result.stdout and "decoder_only_tiny.gin" in result.stdout


def _config_files(model_dir):
  return sorted(name for name in os.listdir(model_dir) if name.startswith("config"))


def test_a_refused_run_of_another_model_keeps_config_gin(tmp_path, capfd):
  code, log = run_cli(capfd, *quick_flags(tmp_path, 2))
  assert code == 0, log
  before = (tmp_path / "config.gin").read_bytes()
  code, log = run_cli(capfd, *quick_flags(tmp_path, 4, "--gin.TransformerConfig.emb_dim=64"))
  assert code == 1 and "of a different model" in log, log
  assert (tmp_path / "config.gin").read_bytes() == before
  assert _config_files(tmp_path) == ["config.gin"]


@pytest.mark.slow
def test_a_run_with_nothing_to_train_keeps_config_gin(tmp_path, capfd):
  code, log = run_cli(capfd, *quick_flags(tmp_path, 2))
  assert code == 0, log
  before = (tmp_path / "config.gin").read_bytes()
  code, log = run_cli(capfd, *quick_flags(tmp_path, 1))
  assert code == 0 and "nothing to train" in log, log
  assert (tmp_path / "config.gin").read_bytes() == before
  assert _config_files(tmp_path) == ["config.gin"]


@pytest.mark.slow
def test_a_resumed_run_with_a_new_config_keeps_the_old_one_as_history(tmp_path, capfd):
  code, log = run_cli(capfd, *quick_flags(tmp_path, 2))
  assert code == 0, log
  first = (tmp_path / "config.gin").read_bytes()
  code, log = run_cli(capfd, *quick_flags(tmp_path, 4, "--gin.EVAL_STEPS=2"))
  assert code == 0 and "Restored checkpoint at step 2" in log, log
  assert _config_files(tmp_path) == ["config-2.gin", "config.gin"]
  assert (tmp_path / "config-2.gin").read_bytes() == first  # in force up to step 2
  assert "EVAL_STEPS = 2" in (tmp_path / "config.gin").read_text()
  assert "EVAL_STEPS = 1" in (tmp_path / "config-2.gin").read_text()


def test_write_operative_config_keeps_every_different_config(tmp_path):
  """Unit level: identical configs write nothing new; a taken history name gets a suffix."""
  import gin  # pylint: disable=g-import-not-at-top

  from trainers import cli, gin_utils  # pylint: disable=g-import-not-at-top

  def write(steps, step):
    gin.clear_config()
    cli.import_configurables()
    gin_utils.parse_gin(gin_utils.parse_flags(quick_flags(tmp_path, steps)))
    try:
      return gin_utils.write_operative_config(str(tmp_path), step)
    finally:
      gin.clear_config()

  path = write(2, 0)
  first = (tmp_path / "config.gin").read_text()
  assert write(2, 0) == path and _config_files(tmp_path) == ["config.gin"]
  write(4, 2)
  assert _config_files(tmp_path) == ["config-2.gin", "config.gin"]
  write(6, 2)  # a segment that ended at step 2 again (it wrote no checkpoint)
  assert _config_files(tmp_path) == ["config-2-2.gin", "config-2.gin", "config.gin"]
  assert (tmp_path / "config-2.gin").read_text() == first
  assert "TRAIN_STEPS = 4" in (tmp_path / "config-2-2.gin").read_text()
  assert "TRAIN_STEPS = 6" in (tmp_path / "config.gin").read_text()
  assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_is_set_aside_and_retrained_once(tmp_path, capfd):
  code, log = run_cli(capfd, *quick_flags(tmp_path, 4))
  assert code == 0, log
  with open(tmp_path / "checkpoints" / "4" / "data" / "metadata", "w") as f:
    f.write('{"train_batches": ')  # damaged
  code, log = run_cli(capfd, *quick_flags(tmp_path, 4))
  assert code == 0, log
  assert "Restored checkpoint at step 2" in log and "moved the damaged checkpoint step 4" in log
  names = os.listdir(tmp_path / "checkpoints")
  assert sorted(n for n in names if n.isdigit()) == ["2", "4"]
  assert len([n for n in names if n.startswith("damaged-4-")]) == 1
  assert data_position(tmp_path, 4) == {"train_batches": 4}
  code, log = run_cli(capfd, *quick_flags(tmp_path, 4))  # the retrained step is the newest
  assert code == 0 and "Restored checkpoint at step 4" in log and "falling back" not in log, log


@pytest.mark.slow
def test_a_resumed_run_logs_each_step_once(tmp_path, capfd):
  code, log = run_cli(capfd, *quick_flags(tmp_path, 4, "--gin.train.log_period=1"))
  assert code == 0, log
  shutil.rmtree(tmp_path / "checkpoints" / "4")  # killed after logging step 4, before saving it
  code, log = run_cli(capfd, *quick_flags(tmp_path, 4, "--gin.train.log_period=1"))
  assert code == 0 and "Restored checkpoint at step 2" in log, log
  for name, steps in (("train", [1, 2, 3, 4]), ("eval", [4])):
    rows = (tmp_path / f"{name}_metrics.jsonl").read_text().splitlines()
    assert [json.loads(row)["step"] for row in rows] == steps, name
