"""Placement search (AlpaServe's algorithm): which device groups to form, with which
(stages x tensor) shape, and which models each group holds a replica of.

- Model buckets: the models, in order of size, cut into up to `max_buckets` runs of
  consecutive sizes (models of one size stay together), and the devices split among the
  buckets (in steps of an eighth of them), so that small models need not share groups, or
  wait behind, large ones. Each bucket is searched alone on its devices, with its own
  models' requests:
- Partitions: the bucket's devices split into groups of one size, for each size that
  divides them and each shape of that size that the profiles cover.
- Greedy replicas, per partition: simulate; take the model with the most unserved
  requests; add a replica of it to the group where the simulated SLO attainment rises most
  and its weights fit the devices' memory; repeat until no replica raises it.
- Keep the bucketing, split and partitions whose whole placement the simulator scores best.
Replication alone is the same search restricted to one-device groups (`configs=[1x1]`).
"""

import dataclasses
import itertools
import time
from typing import Mapping, Optional, Sequence

import numpy as np

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


def model_size(profile: ModelProfile) -> int:
  """The bytes of a model's weights, as its profiles show them (per device x devices)."""
  return min(c.memory_per_device * c.config.devices for c in profile.configs.values())


def model_buckets(
    names: Sequence[str], profiles: Mapping[str, ModelProfile], max_buckets: int
) -> list[tuple[tuple[str, ...], ...]]:
  """Every cut of `names`, smallest first, into 1 to `max_buckets` runs of consecutive
  sizes; models of the same size are never cut apart."""
  ordered = sorted(names, key=lambda m: (model_size(profiles[m]), m))
  sizes = [model_size(profiles[m]) for m in ordered]
  cuts = [i for i in range(1, len(ordered)) if sizes[i] != sizes[i - 1]]
  found = []
  for k in range(min(max_buckets, len(cuts) + 1)):
    for chosen in itertools.combinations(cuts, k):
      bounds = (0, *chosen, len(ordered))
      found.append(tuple(tuple(ordered[a:b]) for a, b in zip(bounds, bounds[1:])))
  return found


def device_splits(num_devices: int, parts: int) -> list[tuple[int, ...]]:
  """The ways to give `parts` buckets their devices, each at least one step (an eighth of
  the devices, or one device when there are fewer than 16)."""
  step = num_devices // 8 if num_devices >= 16 else 1
  units = num_devices // step
  splits = []
  for cut in itertools.combinations(range(1, units), parts - 1):
    bounds = (0, *cut, units)
    shares = [(b - a) * step for a, b in zip(bounds, bounds[1:])]
    shares[-1] += num_devices - units * step
    splits.append(tuple(shares))
  return splits


def only_models(trace: Trace, names: Sequence[str]) -> Trace:
  """The requests of `trace` for `names` (the other models keep their indices)."""
  indices = [trace.model_names.index(m) for m in names if m in trace.model_names]
  keep = np.isin(trace.models, indices)
  return Trace(trace.times[keep], trace.models[keep], trace.model_names)


def check_every_model_fits(
    shapes: Sequence[ParallelConfig],
    profiles: Mapping[str, ModelProfile],
    device_memory: int,
) -> None:
  """A ConfigError naming each model that fits no group of any of `shapes`, with the
  memory it needs."""
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
  candidates: list[tuple[tuple[ParallelConfig, ...], Scored]]  # each bucket's partitions
  seconds: float
  simulations: int


def search(
    num_devices: int,
    device_memory: int,
    profiles: Mapping[str, ModelProfile],
    trace: Trace,
    slo_s: Mapping[str, float] | float,
    *,
    configs: Optional[Sequence[ParallelConfig]] = None,
    max_buckets: int = 2,
    **simulate_kw,
) -> SearchResult:
  """The best placement of the models `trace` asks for (see the module docstring)."""
  unknown = sorted(set(trace.model_names) - set(profiles))
  if unknown:
    raise ConfigError(f"the trace asks for models {unknown} that have no profile")
  known = configs if configs is not None else {c for p in profiles.values() for c in p.configs}
  shapes = [c for c in known if c.devices <= num_devices]
  if not shapes:
    raise ConfigError(
        f"no group shape fits in {num_devices} devices (shapes: {sorted(map(str, known))})"
    )
  check_every_model_fits(shapes, profiles, device_memory)
  start = time.perf_counter()
  searched: dict[tuple, list[tuple[tuple[ParallelConfig, ...], Scored]]] = {}

  def bucket_placements(bucket: tuple[str, ...], devices: int):
    if (bucket, devices) not in searched:
      requests = only_models(trace, bucket)
      searched[bucket, devices] = [
          (p, greedy_placement(p, profiles, requests, slo_s, device_memory, **simulate_kw))
          for p in partitions(devices, profiles, configs)
      ]
    return searched[bucket, devices]

  best, simulations = None, 0
  for buckets in model_buckets(trace.model_names, profiles, max_buckets):
    for split in device_splits(num_devices, len(buckets)):
      found = [bucket_placements(b, d) for b, d in zip(buckets, split)]
      if not all(found):
        continue  # a bucket's devices admit no group of a profiled shape
      parts = [max((s for _, s in f), key=lambda s: s.outcome.attainment) for f in found]
      if len(parts) == 1:
        scored = parts[0]
      else:
        whole = Placement(tuple(g for part in parts for g in part.placement.groups))
        outcome = simulator.simulate(whole, profiles, trace, slo_s, **simulate_kw)
        simulations += 1
        scored = Scored(whole, outcome, sum(p.simulations for p in parts) + 1)
      if best is None or scored.outcome.attainment > best.outcome.attainment:
        best = scored
  candidates = [c for found in searched.values() for c in found]
  simulations += sum(s.simulations for _, s in candidates)
  if best is None:
    raise ConfigError(
        f"no group shape divides {num_devices} devices (shapes: {sorted(map(str, known))})"
    )
  return SearchResult(best, candidates, time.perf_counter() - start, simulations)
