"""Measures a model's serving profile on the machine at hand: for each parallel config of a
device group and each batch size, the seconds each pipeline stage takes for a batch of
requests (scoring `length` tokens, the server's own path: the last stage computes the
scores), and the parameter bytes on the group's busiest device.

Each stage is timed on its own (the previous stage's output already on its devices), after
a first call that compiles it; the median of `repeats` calls is kept.
"""

import statistics
import time
from typing import Any, Sequence

import jax
import numpy as np

from model_zoo.config import TransformerConfig
from model_zoo.errors import ConfigError
from trainers.serving.profiles import ConfigProfile, ModelProfile, ParallelConfig
from trainers.serving.staged import StagedModel


def _median_seconds(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # compiles
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    seconds.append(time.perf_counter() - start)
  return statistics.median(seconds)


def stage_latencies(
    staged: StagedModel, batch: int, length: int, repeats: int
) -> tuple[float, ...]:
  """Median seconds of each stage on a batch of `batch` rows of `length` random tokens to
  score (the last stage's time includes the scores)."""
  rng = np.random.default_rng(0)
  tokens = rng.integers(1, staged.vocab_size, (batch, length)).astype(np.int32)
  weights = np.ones((batch, length), np.float32)
  x, seconds = tokens, []
  for k in range(staged.config.stages):
    inputs = (staged.on_stage(k, x), staged.on_stage(k, tokens), staged.on_stage(k, weights))
    seconds.append(_median_seconds(lambda: staged.run_stage(k, *inputs), repeats))
    x = staged.run_stage(k, *inputs)
  return tuple(seconds)


def profile_model(
    name: str,
    cfg: TransformerConfig,
    params: Any,
    configs: Sequence[ParallelConfig],
    batch_sizes: Sequence[int],
    length: int,
    devices: Sequence[jax.Device],
    repeats: int = 5,
) -> ModelProfile:
  """`name`'s profile on each of `configs`, placed on the first devices of `devices`."""
  too_big = [str(c) for c in configs if c.devices > len(devices)]
  if too_big:
    raise ConfigError(
        f"parallel configs {too_big} need more than the {len(devices)} devices at hand"
    )
  measured = {}
  for config in configs:
    staged = StagedModel(cfg, params, config, devices[: config.devices])
    latency = {b: stage_latencies(staged, b, length, repeats) for b in sorted(set(batch_sizes))}
    measured[config] = ConfigProfile(config, latency, max(staged.memory_per_device().values()))
  return ModelProfile(name, measured)
