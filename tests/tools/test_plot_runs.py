"""tools/plot_runs and tools/run_logs: a run's logs as read (a resumed run's repeated steps, a
cut-short last line, training seconds summed by hand), the curves drawn, the final figures
against the JSONL, user errors; two real tiny runs of the train command line (slow)."""

import json

import pytest
from PIL import Image

from model_zoo.errors import UserError
from tools import plot_runs, run_logs

BALANCE = "aux/decoder/layers/mlp/balance_loss"
EXPERT_LOAD = "metrics/decoder/layers/mlp/expert_load/0/1"


def write_run(directory, train_rows, eval_rows, tail=""):
  directory.mkdir()
  lines = "".join(json.dumps(r) + "\n" for r in train_rows)
  (directory / "train_metrics.jsonl").write_text(lines + tail)
  (directory / "eval_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in eval_rows))
  return str(directory)


def train_row(step, loss, step_time_s, **more):
  return {"step": step, "time": 0.0, "loss": loss, "step_time_s": step_time_s, **more}


@pytest.fixture
def two_runs(tmp_path):
  """A dense run, and a MoE run resumed after step 20 (steps 30-40 logged twice, the later
  rows kept) whose writer was killed mid-line."""
  dense = write_run(
      tmp_path / "dense",
      [
          train_row(s, 5.0 - s / 20, 0.5, tokens_per_second=100.0 + s * s / 10)
          for s in (10, 20, 30, 40)
      ],
      [{"step": s, "time": 0.0, "loss": 4.9 - s / 20} for s in (20, 40)],
  )
  moe_rows = [train_row(10, 5.0, 1.0, **{BALANCE: 0.02, EXPERT_LOAD: 0.3})]
  moe_rows += [train_row(s, 9.0, 9.0) for s in (20, 30, 40)]  # the rows lost to the kill
  moe_rows += [train_row(s, 5.0 - s / 10, 2.0, **{BALANCE: 0.01}) for s in (20, 30, 40)]
  moe = write_run(
      tmp_path / "moe",
      moe_rows,
      [{"step": 40, "time": 0.0, "loss": 1.5}],
      tail='{"step": 50, "lo',
  )
  return dense, moe


def test_a_resumed_runs_last_rows_count_and_its_training_seconds_sum_by_hand(two_runs):
  _, moe = two_runs
  run = run_logs.read_run(moe)
  assert [r["step"] for r in run.train] == [10, 20, 30, 40]
  assert [r["loss"] for r in run.train] == [5.0, 3.0, 2.0, 1.0]
  # 10 steps x 1.0 s, then three periods of 10 steps x 2.0 s.
  assert run.train_seconds == pytest.approx([10.0, 30.0, 50.0, 70.0])
  assert run.seconds_at([5, 25, 40]) == pytest.approx([5.0, 40.0, 70.0])


def test_the_plot_and_the_table_of_two_runs(two_runs, tmp_path, capsys):
  dense, moe = two_runs
  out, png = tmp_path / "runs.json", tmp_path / "runs.png"
  code = plot_runs.main([dense, moe, f"--json_out={out}", f"--plot={png}"])
  assert code == 0
  results = json.loads(out.read_text())
  # Loss: each run's train and eval; tokens/s the dense run's only; MoE's balance term the
  # MoE run's train rows, its per-expert load left out.
  assert results["metrics"] == ["loss", "tokens_per_second", BALANCE]
  assert results["curves"] == {"loss": 4, "tokens_per_second": 1, BALANCE: 1}
  width, height = Image.open(png).size
  assert (width, height) == (1100, 3 * 260)
  figures = results["runs"]
  assert figures["dense"]["train loss"] == 3.0 and figures["dense"]["eval loss"] == pytest.approx(
      2.9
  )
  assert figures["moe"]["train loss"] == 1.0 and figures["moe"]["eval loss"] == 1.5
  assert figures["moe"][f"train {BALANCE}"] == 0.01 and figures["moe"]["last step"] == 40
  assert (
      figures["dense"]["training time (s)"] == 20.0 and figures["moe"]["training time (s)"] == 70.0
  )
  assert figures["dense"]["median tokens/s"] == 165.0  # of 110, 140, 190, 260
  assert figures["moe"]["median tokens/s"] is None
  table = capsys.readouterr().out
  assert "train loss" in table and "dense" in table and "165" in table


def test_named_metrics_and_labels(two_runs, tmp_path):
  dense, moe = two_runs
  png = tmp_path / "runs.png"
  code = plot_runs.main(
      [
          dense,
          moe,
          "--metrics",
          EXPERT_LOAD,
          "--labels",
          "a",
          "b",
          f"--plot={png}",
          f"--json_out={tmp_path / 'r.json'}",
      ]
  )
  assert code == 0
  results = json.loads((tmp_path / "r.json").read_text())
  assert results["curves"] == {EXPERT_LOAD: 1} and set(results["runs"]) == {"a", "b"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{missing}"], "has no train_metrics.jsonl"),
        (["{dense}", "--metrics", "bleu"], "No run logged ['bleu']; --metrics takes any of: loss"),
        (["{dense}", "{moe}", "--labels", "a"], "--labels has 1 names for 2 MODEL_DIRs"),
    ],
)
def test_mistakes_are_one_line_naming_the_fix(two_runs, tmp_path, capsys, argv, message):
  dense, moe = two_runs
  paths = dict(dense=dense, moe=moe, missing=str(tmp_path / "nowhere"))
  code = plot_runs.main(
      [a.format(**paths) for a in argv] + [f"--plot={tmp_path / 'p.png'}", "--json_out=-"]
  )
  assert code == 1 and message in capsys.readouterr().err


def test_a_damaged_line_before_the_last_is_an_error(tmp_path):
  model_dir = write_run(tmp_path / "r", [], [])
  (tmp_path / "r" / "train_metrics.jsonl").write_text('{"step": 1, "lo\n{"step": 2}\n')
  with pytest.raises(UserError, match="line 1 is not JSON"):
    run_logs.read_run(model_dir)


@pytest.mark.slow
def test_two_tiny_runs_of_the_train_command_line(tmp_path, capfd):
  from tests.trainers.test_cli import quick_flags, run_cli

  dirs = [tmp_path / "short", tmp_path / "long"]
  for model_dir, steps in zip(dirs, (4, 6)):
    code, out = run_cli(
        capfd, *quick_flags(model_dir, steps, "--gin.train.log_period=2", "--gin.EVAL_PERIOD=2")
    )
    assert code == 0, out
  out = tmp_path / "runs.json"
  assert plot_runs.main([*map(str, dirs), f"--plot={tmp_path / 'p.png'}", f"--json_out={out}"]) == 0
  results = json.loads(out.read_text())
  assert results["metrics"][:5] == list(plot_runs.DEFAULT_METRICS)
  assert results["curves"]["loss"] == 4 and results["curves"]["learning_rate"] == 2
  for model_dir, label in zip(dirs, ("short", "long")):
    train = run_logs.read_jsonl(str(model_dir / "train_metrics.jsonl"))
    evals = run_logs.read_jsonl(str(model_dir / "eval_metrics.jsonl"))
    figures = results["runs"][label]
    assert figures["last step"] == train[-1]["step"]
    assert figures["train cross_entropy"] == train[-1]["cross_entropy"]
    assert figures["eval accuracy"] == evals[-1]["accuracy"]
    assert figures["training time (s)"] == pytest.approx(sum(r["step_time_s"] * 2 for r in train))
