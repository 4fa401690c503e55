"""Metrics to TensorBoard event files and a JSONL copy; only process 0 writes."""

import json
import os
import time
from typing import Mapping, Optional

import jax


class MetricsWriter:
  """Writes `MODEL_DIR/{name}/events.*` (TensorBoard) and `MODEL_DIR/{name}_metrics.jsonl`.

  A run resumed from step `resume_step` (the restored checkpoint's step; 0 for a run that
  starts afresh) first drops the JSONL rows of later steps, which a killed or diverged run
  wrote before it stopped and the resumed run writes again (the file is rewritten into a
  temporary file that then replaces it, so a kill meanwhile loses nothing). TensorBoard's
  event files are left as they are: the new event file records a purge at
  `resume_step + 1`, and TensorBoard hides the older files' points from that step on.
  A re-evaluation of the checkpoint at `replace_step` first drops that step's JSONL rows
  (training's periodic eval of it, or an earlier re-evaluation): one row per step.
  """

  def __init__(
      self,
      model_dir: str,
      name: str,
      resume_step: Optional[int] = None,
      replace_step: Optional[int] = None,
  ):
    self.enabled = jax.process_index() == 0
    self._tb = None
    self._jsonl = None
    if self.enabled:
      from tensorboardX import SummaryWriter  # pure Python; no TensorFlow in the core

      path = os.path.join(model_dir, f"{name}_metrics.jsonl")
      purge_step = None
      if resume_step is not None:
        _drop_rows_after(path, resume_step)
        purge_step = resume_step + 1
      if replace_step is not None:
        _drop_rows_of(path, replace_step)
      # The suffix keeps a writer opened within a second of the previous one (same name
      # otherwise) from truncating that one's file, and sorts the files by age.
      self._tb = SummaryWriter(
          os.path.join(model_dir, name),
          purge_step=purge_step,
          filename_suffix=f".{time.time_ns()}",
      )
      self._jsonl = open(path, "a", encoding="utf-8")

  def write(self, step: int, values: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    for key, value in values.items():
      self._tb.add_scalar(key, value, step)
    self._tb.flush()
    self._jsonl.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")
    self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self._tb.close()
      self._jsonl.close()


def _drop_rows_after(path: str, step: int) -> None:
  """Rewrites the JSONL file at `path` without its rows of steps after `step`, atomically.

  Rows without a readable step are kept, except a last line cut short (no newline) by a
  kill in the middle of a write.
  """
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.readlines()
  except FileNotFoundError:
    return
  kept = []
  for i, line in enumerate(lines):
    row_step = _row_step(line)
    if row_step is None and i == len(lines) - 1 and not line.endswith("\n"):
      continue  # a row half written when the run was killed
    if isinstance(row_step, (int, float)) and row_step > step:
      continue
    kept.append(line if line.endswith("\n") else line + "\n")
  if kept == lines:
    return
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.writelines(kept)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _drop_rows_of(path: str, step: int) -> None:
  """Removes the JSONL rows of `step` from the file at `path`.

  Rewritten in place rather than replaced: a training run may be appending to the file
  meanwhile (an eval job beside it), and its appends must keep landing in this file.
  """
  try:
    with open(path, "r+", encoding="utf-8") as f:
      lines = f.readlines()
      kept = [line for line in lines if _row_step(line) != step]
      if kept != lines:
        f.seek(0)
        f.writelines(kept)
        f.truncate()
  except FileNotFoundError:
    pass


def _row_step(line: str) -> Optional[float]:
  """The "step" of a JSONL row; None for a line that is not a row (e.g. cut short)."""
  try:
    return json.loads(line).get("step")
  except (ValueError, AttributeError):
    return None


class Progress:
  """One-line reports of long work: 'step 20/300 | ... | 2.10 steps/s | ETA 2m11s'.

  `what` formats the count ("step {done}{of}"; `of` is "/total" when the total is known).
  The training loop reports at its log period; inference every `period_s` seconds.
  """

  def __init__(
      self, what: str, unit: str, total: Optional[int], done: int = 0, period_s: float = 0.0
  ):
    self.what, self.unit, self.total, self.period_s = what, unit, total, period_s
    self._last = self._printed = (done, time.time())

  def rate(self, done: int) -> tuple[float, float]:
    """(units per second, seconds elapsed) since the previous call."""
    rate, elapsed = _rate(self._last, done)
    self._last = (done, time.time())
    return rate, elapsed

  def report(
      self, done: int, *fields: str, rate: Optional[float] = None, final: bool = False
  ) -> None:
    """Prints the line from process 0, at most every period_s seconds unless `final`.

    `rate` defaults to the rate since the previous printed line.
    """
    if jax.process_index() or not (final or time.time() - self._printed[1] >= self.period_s):
      return
    rate = _rate(self._printed, done)[0] if rate is None else rate
    self._printed = (done, time.time())
    of = f"/{self.total}" if self.total else ""
    parts = [self.what.format(done=done, of=of), *fields, f"{rate:,.2f} {self.unit}/s"]
    if self.total and not final:
      parts.append(f"ETA {_duration((self.total - done) / max(rate, 1e-9))}")
    print(" | ".join(parts), flush=True)


def _rate(since: tuple[int, float], done: int) -> tuple[float, float]:
  elapsed = max(time.time() - since[1], 1e-9)
  return max(done - since[0], 0) / elapsed, elapsed


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
