"""The logged input wait: time in `next(batches)` over each log period's wall time.

Drives the real step loop, metrics writer and progress line with batches that take a known
time to arrive and steps that take a known time (a fake trainer: a real one's compile would
blur the first period).
"""

import json
import re
import time
import types

import pytest

from model_zoo import metrics as metrics_lib
from trainers import metrics_writer, preemption, train

STEP_S = 0.05
LOG_PERIOD = 4
# Per period of batches: none wait (while JAX's first dispatches take their time); every batch
# waits a step's time; none wait; only the first waits 4 steps' time.
WAITS_S = [0.0] * 4 + [STEP_S] * 4 + [0.0] * 4 + [4 * STEP_S] + [0.0] * 3
# Each period's wait over its wall time (waits + steps). From the second period on, a fraction
# of step time (2.0, 0.0, 2.0), a wait never reset (0.5, 1.0, 1.0) or only the period's last
# wait (0.125, 0.0, 0.0) each miss these by far more than the tolerance.
EXPECTED = [0.0, 0.5, 0.0, 0.5]


class _SleepingTrainer:
  """A step that takes STEP_S and reports a loss and 8 target tokens."""

  model = None  # a token model's progress line: tokens/s

  def train_step(self, state, batch):
    del batch
    time.sleep(STEP_S)
    metrics = {"loss": metrics_lib.Average.of(1.0), "target_tokens": metrics_lib.Average.of(8.0)}
    return types.SimpleNamespace(step=state.step + 1), metrics

  def params_are_finite(self, state):
    del state
    return True


def _batches(waits):
  for wait in waits:
    time.sleep(wait)
    yield {}


def test_input_wait_fraction_is_the_wait_over_each_periods_wall_time(tmp_path, capsys):
  saves = []
  checkpointer = types.SimpleNamespace(
      should_save=lambda step: False,
      save=lambda state, position, batches: saves.append(position),
      latest_step=lambda: None,
      directory=str(tmp_path),
  )
  writer = metrics_writer.MetricsWriter(str(tmp_path), "train", 0)
  with preemption.Watch() as preempt:
    train._step_loop(
        _SleepingTrainer(),
        types.SimpleNamespace(step=0),
        {"train_batches": 0},
        _batches(WAITS_S),
        checkpointer,
        writer,
        len(WAITS_S),
        LOG_PERIOD,
        None,
        1,
        preempt,
        types.SimpleNamespace(heartbeat=lambda: None),
    )
  writer.close()
  assert saves == [{"train_batches": len(WAITS_S)}]
  with open(tmp_path / "train_metrics.jsonl", encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  assert [r["step"] for r in rows] == [4, 8, 12, 16]
  logged = [r["input_wait_fraction"] for r in rows]
  assert logged == pytest.approx(EXPECTED, abs=0.1)
  printed = [
      float(p) / 100 for p in re.findall(r"\| input wait ([\d.]+)% \|", capsys.readouterr().out)
  ]
  assert printed == pytest.approx(logged, abs=0.001)  # the line shows the logged value
