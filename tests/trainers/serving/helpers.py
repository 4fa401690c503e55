"""Profiles and traces for the serving tests: made-up latencies, so the cases can be worked
out by hand."""

import numpy as np

from trainers.serving.profiles import ConfigProfile, ModelProfile, ParallelConfig
from trainers.serving.workload import Trace

GIB = 2**30
ONE = ParallelConfig(1, 1)
TWO_STAGES = ParallelConfig(2, 1)


def profile(name: str, seconds: float = 1.0, overhead: float = 0.1, memory: int = GIB):
  """One device: `seconds` a request and `memory` bytes; two stages: each stage half the work
  plus `overhead` (communication), half the memory per device."""
  half = seconds * (1 + overhead) / 2
  return ModelProfile(
      name,
      {
          ONE: ConfigProfile(ONE, {1: (seconds,)}, memory),
          TWO_STAGES: ConfigProfile(TWO_STAGES, {1: (half, half)}, memory // 2),
      },
  )


def trace(times, models=None, names=("A",)) -> Trace:
  models = [0] * len(times) if models is None else models
  return Trace(np.asarray(times, dtype=float), np.asarray(models, dtype=np.int64), tuple(names))
