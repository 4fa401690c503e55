"""Resuming restores the input pipeline's saved state instead of reading the data again; a
checkpoint without a usable one (older, or from another number of processes) is resumed by
replaying the data, to the same batches."""

import os
import shutil

import pytest

from tasks import pipeline
from tests.trainers.test_cli import assert_same_params, quick_flags, run_cli, saved_state

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _train_starts(monkeypatch) -> list[int]:
  """Records the `start_batch` of each training pipeline built (the replayed batches)."""
  starts, real = [], pipeline.get_batches

  def recording(name, lengths, split, *args, **kwargs):
    if split == "train":
      starts.append(kwargs.get("start_batch", 0))
    return real(name, lengths, split, *args, **kwargs)

  monkeypatch.setattr(pipeline, "get_batches", recording)
  return starts


@pytest.mark.slow
def test_resume_restores_the_saved_pipeline_state_else_replays_to_the_same_batches(
    tmp_path, capfd, monkeypatch
):
  restored, older, other_hosts = tmp_path / "restored", tmp_path / "older", tmp_path / "other"
  code, log = run_cli(capfd, *quick_flags(restored, 4))
  assert code == 0, log
  saved = restored / "checkpoints" / "4" / "data_iterator"
  assert {p.name.split(".")[0] for p in saved.glob("process_*")} == {"process_0-of-1"}
  shutil.copytree(restored, older)
  shutil.rmtree(older / "checkpoints" / "4" / "data_iterator")  # as written before it existed
  shutil.copytree(restored, other_hosts)
  for path in (other_hosts / "checkpoints" / "4" / "data_iterator").iterdir():
    path.rename(path.with_name(path.name.replace("-of-1", "-of-2")))  # a 2-process run's

  starts = _train_starts(monkeypatch)
  code, log = run_cli(capfd, *quick_flags(restored, 6))
  assert code == 0 and "Restored checkpoint at step 4" in log, log
  assert starts == [0] and "Replaying" not in log  # nothing read twice

  del starts[:]
  code, log = run_cli(capfd, *quick_flags(older, 6))
  assert code == 0, log
  assert starts == [0, 4] and "Replaying 4 batches to reach the data position of step 4" in log

  del starts[:]
  code, log = run_cli(capfd, *quick_flags(other_hosts, 6))
  assert code == 0, log
  assert starts == [0, 4] and "Replaying 4 batches" in log
  assert "process_0-of-2" in log and "cannot be used" in log  # the warning says why

  assert_same_params(saved_state(restored, 6), saved_state(older, 6))
  assert_same_params(saved_state(restored, 6), saved_state(other_hosts, 6))
