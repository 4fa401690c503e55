"""Serving profiles: for each model and each parallel config of a device group, the latency
of a request batch on each pipeline stage and the memory each device holds.

The placement search and the simulator read only these numbers, so a profile measured once
on the machine at hand (saved as JSON) is reused for every placement they score.
"""

import dataclasses
import json
import os
from typing import Iterable, Mapping

from model_zoo.errors import ConfigError, MissingFileError
from trainers.infer_outputs import write_jsonl


@dataclasses.dataclass(frozen=True, order=True)
class ParallelConfig:
  """A device group's shape: `stages` pipeline stages (inter-op, contiguous layers), each
  sharded over `tensor` devices (intra-op, the partitioner's tensor axis)."""

  stages: int
  tensor: int

  def __post_init__(self):
    if self.stages < 1 or self.tensor < 1:
      raise ConfigError(f"a parallel config needs stages >= 1 and tensor >= 1; got {self}")

  @property
  def devices(self) -> int:
    return self.stages * self.tensor

  def __str__(self) -> str:
    return f"{self.stages}x{self.tensor}"


@dataclasses.dataclass(frozen=True)
class ConfigProfile:
  """One model on one parallel config: seconds per stage for each profiled batch size, and
  the bytes the busiest device of the group holds (weights and what serving adds)."""

  config: ParallelConfig
  stage_latency_s: Mapping[int, tuple[float, ...]]
  memory_per_device: int

  def __post_init__(self):
    if not self.stage_latency_s:
      raise ConfigError(f"the profile of {self.config} has no batch size")
    for batch, stages in self.stage_latency_s.items():
      if batch < 1 or len(stages) != self.config.stages or min(stages) < 0:
        raise ConfigError(
            f"the profile of {self.config} at batch {batch} has stage latencies {stages}: "
            f"expected {self.config.stages} non-negative seconds (one per stage)"
        )

  @property
  def max_batch(self) -> int:
    return max(self.stage_latency_s)

  def latency(self, batch: int) -> tuple[float, ...]:
    """Stage latencies of a batch of `batch` requests: the smallest profiled batch that holds
    it (a server pads a batch up to a compiled size)."""
    fitting = [b for b in self.stage_latency_s if b >= batch]
    if not fitting:
      raise ConfigError(f"batch {batch} exceeds the largest profiled batch {self.max_batch}")
    return self.stage_latency_s[min(fitting)]


@dataclasses.dataclass(frozen=True)
class ModelProfile:
  """A model's profiles, one per parallel config it was measured on."""

  name: str
  configs: Mapping[ParallelConfig, ConfigProfile]

  def on(self, config: ParallelConfig) -> ConfigProfile:
    if config not in self.configs:
      raise ConfigError(
          f"model {self.name!r} has no profile for the parallel config {config}; "
          f"it has {sorted(map(str, self.configs))}. Profile it on {config} first."
      )
    return self.configs[config]

  def single_device_latency(self) -> float:
    """Seconds of one request on one device: the unit of SLOs ("SLO scale x this")."""
    return sum(self.on(ParallelConfig(1, 1)).latency(1))


def save(profiles: Iterable[ModelProfile], path: str | os.PathLike) -> None:
  """Writes the profiles as JSON Lines (a model a line), all or nothing."""
  records = (
      {
          "model": p.name,
          "configs": [
              {
                  "stages": c.config.stages,
                  "tensor": c.config.tensor,
                  "memory_per_device": c.memory_per_device,
                  "stage_latency_s": {
                      str(b): list(s) for b, s in sorted(c.stage_latency_s.items())
                  },
              }
              for c in sorted(p.configs.values(), key=lambda c: c.config)
          ],
      }
      for p in profiles
  )
  write_jsonl(os.path.abspath(path), records)


def load(path: str | os.PathLike) -> dict[str, ModelProfile]:
  """The profiles saved by `save`, by model name; a bad file is named with what is wrong."""
  if not os.path.exists(path):
    raise MissingFileError(f"no serving profile at {path}; measure one first")
  try:
    with open(path, encoding="utf-8") as f:
      records = [json.loads(line) for line in f if line.strip()]
    profiles = {}
    for record in records:
      configs = {}
      for c in record["configs"]:
        config = ParallelConfig(int(c["stages"]), int(c["tensor"]))
        configs[config] = ConfigProfile(
            config,
            {int(b): tuple(map(float, s)) for b, s in c["stage_latency_s"].items()},
            int(c["memory_per_device"]),
        )
      profiles[record["model"]] = ModelProfile(record["model"], configs)
  except (ValueError, KeyError, TypeError) as e:
    raise ConfigError(f"the serving profile {path} is not valid: {type(e).__name__}: {e}") from e
  return profiles
