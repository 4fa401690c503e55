"""SIGTERM (a preemption notice) mid-run: the step finishes, a checkpoint is saved with the
data position, the run exits 143, and the rerun ends exactly where an uninterrupted run does."""

import os
import signal

import pytest

from tests.trainers.test_cli import (
    assert_same_params,
    data_position,
    quick_flags,
    run_cli,
    saved_state,
)
from trainers import checkpoints, preemption, train

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.slow
def test_sigterm_saves_the_step_and_the_rerun_equals_an_uninterrupted_run(
    tmp_path, capfd, monkeypatch
):
  preempted, straight = tmp_path / "preempted", tmp_path / "straight"
  flags = ["--gin.CHECKPOINT_PERIOD=1000", "--gin.EVAL_PERIOD=1000"]  # no save but SIGTERM's
  real_step, real_save = train.Trainer.train_step, checkpoints.Checkpointer.save
  steps_run, saves = [], []

  def step_then_signal(self, state, batch):
    out = real_step(self, state, batch)
    steps_run.append(1)
    if len(steps_run) == 3:
      os.kill(os.getpid(), signal.SIGTERM)  # arrives while step 3 is under way
    return out

  def save_under_a_second_signal(self, state, position, data_iterator=None):
    os.kill(os.getpid(), signal.SIGTERM)  # the scheduler insists; the save must complete
    saves.append(position)
    return real_save(self, state, position, data_iterator)

  handler_before = signal.getsignal(signal.SIGTERM)
  with monkeypatch.context() as patch:
    patch.setattr(train.Trainer, "train_step", step_then_signal)
    patch.setattr(checkpoints.Checkpointer, "save", save_under_a_second_signal)
    code, log = run_cli(capfd, *quick_flags(preempted, 8, *flags))
  assert code == preemption.EXIT_CODE == 143, log
  assert signal.getsignal(signal.SIGTERM) == handler_before  # the handler is put back
  assert len(steps_run) == 3 and saves == [{"train_batches": 3}]
  assert "Preempted (SIGTERM): saved checkpoint step 3" in log and "run the same command" in log
  assert "In call to configurable" not in log  # gin's context line is not the user's business
  assert sorted(os.listdir(preempted / "checkpoints")) == ["3"]
  assert data_position(preempted, 3) == {"train_batches": 3}
  assert "PROMPT:" not in log and "Done" not in log  # stopped, not finished

  code, log = run_cli(capfd, *quick_flags(preempted, 8, *flags))
  assert code == 0 and "Restored checkpoint at step 3" in log, log
  code, log = run_cli(capfd, *quick_flags(straight, 8, *flags))
  assert code == 0, log
  assert_same_params(saved_state(preempted, 8), saved_state(straight, 8))
  assert data_position(preempted, 8) == data_position(straight, 8) == {"train_batches": 8}


def test_without_a_notice_the_watch_never_stops_and_restores_the_handler():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.Watch() as watch:
    assert signal.getsignal(signal.SIGTERM) != before
    assert not any(watch.should_stop(step) for step in range(1, 50))
  assert signal.getsignal(signal.SIGTERM) == before
