"""Metrics to TensorBoard event files and a JSONL copy; only process 0 writes."""

import json
import os
import time
from typing import Mapping, Optional

import jax


class MetricsWriter:
  """Writes `MODEL_DIR/{name}/events.*` (TensorBoard) and `MODEL_DIR/{name}_metrics.jsonl`."""

  def __init__(self, model_dir: str, name: str):
    self.enabled = jax.process_index() == 0
    self._tb = None
    self._jsonl = None
    if self.enabled:
      from tensorboardX import SummaryWriter  # pure Python; no TensorFlow in the core

      self._tb = SummaryWriter(os.path.join(model_dir, name))
      self._jsonl = open(os.path.join(model_dir, f"{name}_metrics.jsonl"), "a", encoding="utf-8")

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
