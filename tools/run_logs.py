"""A run's metric logs as tools read them: MODEL_DIR/train_metrics.jsonl and eval_metrics.jsonl.

A resumed run logs again the steps after its last checkpoint, so a step can appear twice:
the later row (the run that went on) is kept. A run killed while writing can leave a last
line cut short: it is left out, and said so. A row's training time is the sum of step_time_s
x steps over the train rows up to it (the time in train steps, not in evals or checkpoints).
"""

import dataclasses
import json
import logging
import os

import numpy as np

from model_zoo.errors import MissingFileError, UserError

TRAIN_LOG, EVAL_LOG = "train_metrics.jsonl", "eval_metrics.jsonl"


def read_jsonl(path: str) -> list[dict]:
  """The JSON rows of a file; a cut-short last line (a killed writer) is left out."""
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  rows = []
  for number, line in enumerate(lines, 1):
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError as e:
      if number < len(lines):
        raise UserError(f"{path} line {number} is not JSON ({e}); the log is damaged.") from e
      logging.warning("%s: its last line is cut short (a killed run); left out.", path)
  return rows


def by_step(rows: list[dict]) -> list[dict]:
  """One row per step, the last one logged for it, in step order."""
  return sorted({row["step"]: row for row in rows}.values(), key=lambda row: row["step"])


@dataclasses.dataclass
class RunLog:
  """One run's train and eval rows (one per step) and training seconds at each train row."""

  model_dir: str
  train: list[dict]
  eval: list[dict]
  train_seconds: list[float]

  def seconds_at(self, steps: list[int]) -> list[float]:
    """Training seconds at `steps`, interpolated between the train rows (0 at step 0)."""
    known = [0] + [row["step"] for row in self.train]
    return list(np.interp(steps, known, [0.0] + self.train_seconds))

  def metrics(self) -> set[str]:
    """Every metric either log has (not the step or the time)."""
    return {k for row in self.train + self.eval for k in row} - {"step", "time"}


def read_run(model_dir: str) -> RunLog:
  """The logs of the run in `model_dir`; an error naming it when it has no train log."""
  path = os.path.join(model_dir, TRAIN_LOG)
  if not os.path.isfile(path):
    raise MissingFileError(
        f"{model_dir} has no {TRAIN_LOG}: give the MODEL_DIR of a run that has logged a train "
        "step (train.log_period)."
    )
  train = by_step(read_jsonl(path))
  eval_path = os.path.join(model_dir, EVAL_LOG)
  evals = by_step(read_jsonl(eval_path)) if os.path.isfile(eval_path) else []
  seconds, elapsed, previous = [], 0.0, 0
  for row in train:
    elapsed += (row["step"] - previous) * row.get("step_time_s", 0.0)
    seconds.append(elapsed)
    previous = row["step"]
  return RunLog(model_dir, train, evals, seconds)
