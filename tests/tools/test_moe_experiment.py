"""tools/moe_experiment: the curves it reads from a run's JSONL logs (training seconds summed by
hand), its table and its plot; one real two-step run of the command lines (slow)."""

import json

import pytest

from model_zoo.errors import UserError
from tools import moe_experiment


def _write_jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _model_dir(tmp_path, name, step_times, eval_losses, period=50):
  model_dir = tmp_path / name
  model_dir.mkdir()
  steps = [period * (i + 1) for i in range(len(step_times))]
  _write_jsonl(
      model_dir / "train_metrics.jsonl",
      [{"step": s, "time": 0.0, "loss": 5.0, "step_time_s": t} for s, t in zip(steps, step_times)],
  )
  _write_jsonl(
      model_dir / "eval_metrics.jsonl",
      [{"step": s, "time": 0.0, "loss": l} for s, l in zip(steps, eval_losses)],
  )
  return str(model_dir)


def test_curves_sum_each_log_periods_steps_times_its_step_time(tmp_path):
  model_dir = _model_dir(tmp_path, "a", [0.2, 0.1, 0.3], [4.0, 3.5, 3.25])
  got = moe_experiment.curves(model_dir)
  assert got["step"] == [50, 100, 150]
  assert got["eval_loss"] == [4.0, 3.5, 3.25]
  assert got["train_seconds"] == pytest.approx([10.0, 15.0, 30.0])


def test_an_eval_step_without_a_training_row_is_named(tmp_path):
  model_dir = _model_dir(tmp_path, "a", [0.2], [4.0])
  with open(f"{model_dir}/eval_metrics.jsonl", "a") as f:
    f.write(json.dumps({"step": 75, "loss": 3.0}) + "\n")
  with pytest.raises(UserError, match=r"eval steps \[75\] have no training log row"):
    moe_experiment.curves(model_dir)


def test_table_and_plot(tmp_path):
  models = {}
  for name, times, losses in (
      ("dense", [0.1, 0.1], [4.0, 3.5]),
      ("GLaM E=4 einsum", [0.2, 0.2], [3.9, 3.3]),
  ):
    curve = moe_experiment.curves(_model_dir(tmp_path, name.replace(" ", ""), times, losses))
    models[name] = {**curve, "params_total": 2e6, "params_activated": 1e6}
  results = moe_experiment.summarise(
      {"steps": 100, "batch_size": 16, "eval_steps": 20, "eval_period": 50, "dispatch": "einsum"},
      models,
  )
  glam = results["models"]["GLaM E=4 einsum"]
  assert glam["eval_loss_vs_dense"] == pytest.approx(-0.2)
  assert glam["train_seconds_vs_dense"] == pytest.approx(2.0)
  table = moe_experiment.format_table(results)
  assert "GLaM E=4 einsum | 2.00M | 1.00M | 3.3000 | -0.2000 | 20 | 2.00x" in table
  png = tmp_path / "plot.png"
  moe_experiment.plot(results, str(png))
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.slow
def test_two_real_runs_through_the_command_line(tmp_path):
  out = tmp_path / "out.json"
  rc = moe_experiment.main(
      [
          "--experts=2",
          "--steps=4",
          "--eval_period=2",
          "--eval_steps=1",
          "--batch_size=4",
          f"--out_dir={tmp_path / 'runs'}",
          f"--json_out={out}",
          f"--plot={tmp_path / 'plot.png'}",
      ]
  )
  assert rc == 0
  models = json.loads(out.read_text())["models"]
  assert list(models) == ["dense", "GLaM E=2 einsum"]
  for m in models.values():
    assert m["step"] == [2, 4] and len(m["eval_loss"]) == 2
    assert 0 < m["train_seconds"][0] < m["train_seconds"][1]
