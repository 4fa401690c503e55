"""Placement search (AlpaServe's algorithm): which device groups to form, with which
(stages x tensor) shape, and which models each group holds a replica of.

- Partitions: the devices split into groups of one size, for each size that divides them
  and each shape of that size that the profiles cover (as the paper's search does within a
  bucket of models).
- Greedy replicas, per partition: simulate; take the model with the most unserved
  requests; add a replica of it to the group where the simulated SLO attainment rises most
  and its weights fit the devices' memory; repeat until no replica raises it.
- Keep the partition whose placement the simulator scores best.
Replication alone is the same search restricted to one-device groups (`configs=[1x1]`).
"""

import dataclasses
import time
from typing import Mapping, Optional, Sequence

from model_zoo.errors import ConfigError
from trainers.serving import simulator
from trainers.serving.profiles import ModelProfile, ParallelConfig
from trainers.serving.simulator import Group, Outcome, Placement
from trainers.serving.workload import Trace


def memory_used(group: Group, profiles: Mapping[str, ModelProfile]) -> int:
  """Bytes on the busiest device of `group` with every replica it holds."""
  return sum(profiles[m].on(group.config).memory_per_device for m in group.models)


def fits(
    model: str, group: Group, profiles: Mapping[str, ModelProfile], device_memory: int
) -> bool:
  """Whether one more replica of `model` fits `group` (profiled on its shape, in memory)."""
  profile = profiles[model]
  if model in group.models or group.config not in profile.configs:
    return False
  need = profile.on(group.config).memory_per_device
  return memory_used(group, profiles) + need <= device_memory


@dataclasses.dataclass(frozen=True)
class Scored:
  placement: Placement
  outcome: Outcome
  simulations: int


def greedy_placement(
    configs: Sequence[ParallelConfig],
    profiles: Mapping[str, ModelProfile],
    trace: Trace,
    slo_s: Mapping[str, float] | float,
    device_memory: int,
    **simulate_kw,
) -> Scored:
  """Groups of the given shapes, filled greedily (see the module docstring)."""
  placement = Placement(tuple(Group(c) for c in configs))
  outcome = simulator.simulate(placement, profiles, trace, slo_s, **simulate_kw)
  simulations = 1
  while True:
    unserved = outcome.unserved()
    best: Optional[tuple[float, Placement, Outcome]] = None
    for model in sorted(unserved, key=lambda m: -unserved[m]):
      if not unserved[model]:
        break
      tried = set()
      for i, group in enumerate(placement.groups):
        # Identical groups give the same outcome: try one of each.
        if group in tried or not fits(model, group, profiles, device_memory):
          continue
        tried.add(group)
        candidate = placement.replacing(i, group.with_model(model))
        scored = simulator.simulate(candidate, profiles, trace, slo_s, **simulate_kw)
        simulations += 1
        if scored.attainment > (best[0] if best else outcome.attainment):
          best = (scored.attainment, candidate, scored)
      if best:
        break
    if best is None:
      return Scored(placement, outcome, simulations)
    _, placement, outcome = best


def partitions(
    num_devices: int,
    profiles: Mapping[str, ModelProfile],
    configs: Optional[Sequence[ParallelConfig]] = None,
) -> list[tuple[ParallelConfig, ...]]:
  """Every split of `num_devices` into equal groups of a shape that some profile covers (or
  one of `configs`), smallest groups first."""
  shapes = (
      set(configs) if configs is not None else {c for p in profiles.values() for c in p.configs}
  )
  return [
      (shape,) * (num_devices // shape.devices)
      for shape in sorted(shapes, key=lambda c: (c.devices, c.stages))
      if num_devices % shape.devices == 0
  ]


def check_every_model_fits(
    candidates: Sequence[tuple[ParallelConfig, ...]],
    profiles: Mapping[str, ModelProfile],
    device_memory: int,
) -> None:
  """A ConfigError naming each model that fits no group of any candidate partition, with
  the memory it needs."""
  shapes = {c for partition in candidates for c in partition}
  too_big = []
  for name, profile in profiles.items():
    usable = [c for c in shapes if c in profile.configs]
    if not any(profile.on(c).memory_per_device <= device_memory for c in usable):
      if usable:
        least = min(usable, key=lambda c: profile.on(c).memory_per_device)
        too_big.append(
            f"{name} needs {profile.on(least).memory_per_device / 2**30:.2f} GiB per device "
            f"even on {least}"
        )
      else:
        too_big.append(f"{name} has no profile on any shape of these groups")
  if too_big:
    raise ConfigError(
        f"models fit no device group (a device has {device_memory / 2**30:.2f} GiB): "
        f"{'; '.join(too_big)}. Profile them on larger groups (more stages or tensor "
        "shards), or give more devices or memory."
    )


@dataclasses.dataclass(frozen=True)
class SearchResult:
  best: Scored
  candidates: list[tuple[tuple[ParallelConfig, ...], Scored]]
  seconds: float

  @property
  def simulations(self) -> int:
    return sum(s.simulations for _, s in self.candidates)


def search(
    num_devices: int,
    device_memory: int,
    profiles: Mapping[str, ModelProfile],
    trace: Trace,
    slo_s: Mapping[str, float] | float,
    *,
    configs: Optional[Sequence[ParallelConfig]] = None,
    **simulate_kw,
) -> SearchResult:
  """The best greedy placement over `partitions(num_devices, profiles, configs)`."""
  unknown = sorted(set(trace.model_names) - set(profiles))
  if unknown:
    raise ConfigError(f"the trace asks for models {unknown} that have no profile")
  candidates = partitions(num_devices, profiles, configs)
  if not candidates:
    raise ConfigError(
        f"no group shape divides {num_devices} devices "
        f"(shapes: {sorted(map(str, configs or {c for p in profiles.values() for c in p.configs}))})"
    )
  check_every_model_fits(candidates, profiles, device_memory)
  start = time.perf_counter()
  scored = [
      (partition, greedy_placement(partition, profiles, trace, slo_s, device_memory, **simulate_kw))
      for partition in candidates
  ]
  best = max(scored, key=lambda item: item[1].outcome.attainment)[1]
  return SearchResult(best, scored, time.perf_counter() - start)
