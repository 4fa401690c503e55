"""Metrics to TensorBoard event files and a JSONL copy; only process 0 writes."""

import json
import os
import time
from typing import Mapping

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
  """A one-line progress report: steps/s, tokens/s and ETA."""

  def __init__(self, total_steps: int, start_step: int):
    self.total_steps = total_steps
    self._last_step = start_step
    self._last_time = time.time()

  def rates(self, step: int, tokens: float) -> tuple[float, float, float]:
    """(steps/s, tokens/s, seconds per step) since the previous call."""
    now = time.time()
    elapsed = max(now - self._last_time, 1e-9)
    steps = max(step - self._last_step, 1)
    self._last_step, self._last_time = step, now
    return steps / elapsed, tokens / elapsed, elapsed / steps

  def line(self, step: int, loss: float, steps_per_s: float, tokens_per_s: float) -> str:
    eta = (self.total_steps - step) / max(steps_per_s, 1e-9)
    return (
        f"step {step}/{self.total_steps} | loss {loss:.4f} | {steps_per_s:.2f} steps/s | "
        f"{tokens_per_s:,.0f} tokens/s | ETA {_duration(eta)}"
    )


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
