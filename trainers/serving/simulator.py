"""The serving simulator: replays a trace against a placement, using the profiled stage
latencies, and reports SLO attainment and latency percentiles.

The policy is the one the server runs (and AlpaServe's):
- a request goes to the group holding its model with the shortest queue (ties: the group
  whose first stage frees first, then the first group); with a full queue it is rejected;
- each group runs its queue in order, a batch at a time: when its first stage is free, the
  request at the head and the queued requests of the same model that have arrived (up to
  `max_batch`) form a batch, cut to the largest one that meets the head's deadline;
- a batch runs its stages in order, each stage when the previous one has finished the batch
  and that stage's devices are free, so a group with S stages has up to S batches in flight;
- a request that would finish after its deadline (arrival + its model's SLO) even alone is
  dropped when it reaches the head, without using the devices.
Everything is in seconds of simulated time; one run is a single pass over the trace.
"""

import collections
import dataclasses
import itertools
import math
from typing import Mapping, Optional

import numpy as np

from model_zoo.errors import ConfigError
from trainers.serving.profiles import ModelProfile, ParallelConfig
from trainers.serving.workload import Trace


@dataclasses.dataclass(frozen=True)
class Group:
  """A device group: its shape, and the models it holds a replica of."""

  config: ParallelConfig
  models: tuple[str, ...] = ()

  def with_model(self, model: str) -> "Group":
    return Group(self.config, self.models + (model,))

  def __str__(self) -> str:
    return f"{self.config}[{','.join(self.models)}]"


@dataclasses.dataclass(frozen=True)
class Placement:
  groups: tuple[Group, ...]

  @property
  def devices(self) -> int:
    return sum(g.config.devices for g in self.groups)

  def replacing(self, index: int, group: Group) -> "Placement":
    return Placement(self.groups[:index] + (group,) + self.groups[index + 1 :])

  def __str__(self) -> str:
    return " ".join(map(str, self.groups))


# Why a request was not served.
SERVED, DROPPED, REJECTED, UNPLACED = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class Outcome:
  """Per request of the trace: what happened to it and, if served, its latency."""

  trace: Trace
  status: np.ndarray
  latency_s: np.ndarray

  @property
  def attainment(self) -> float:
    """The share of requests served within their SLO (1.0 for an empty trace)."""
    return float(np.mean(self.status == SERVED)) if len(self.status) else 1.0

  def unserved(self) -> dict[str, int]:
    """Requests not served, by model."""
    counts = np.bincount(
        self.trace.models[self.status != SERVED], minlength=len(self.trace.model_names)
    )
    return dict(zip(self.trace.model_names, counts.tolist()))

  def counts(self) -> dict[str, int]:
    names = ("served", "dropped", "rejected", "unplaced")
    return {n: int(np.sum(self.status == i)) for i, n in enumerate(names)}

  def latency_percentiles(self, quantiles=(50, 99)) -> dict[str, float]:
    """Percentiles of the served requests' latency (seconds); NaN when none was served."""
    served = self.latency_s[self.status == SERVED]
    return {
        f"p{q:g}": float(np.percentile(served, q)) if len(served) else math.nan for q in quantiles
    }


class _GroupState:
  """A group's clocks (when each stage's devices are next free) and its queue."""

  __slots__ = ("stage_free", "queue", "latency")

  def __init__(self, stages: int, latency: dict[int, list[tuple[float, ...]]]):
    self.stage_free = [0.0] * stages
    self.queue: collections.deque[int] = collections.deque()
    self.latency = latency  # model index -> [None, stages at batch 1, at batch 2, ...]

  def finish(self, start: float, stage_latency: tuple[float, ...]) -> float:
    t = start
    for free, seconds in zip(self.stage_free, stage_latency):
      t = (t if t > free else free) + seconds
    return t

  def run(self, start: float, stage_latency: tuple[float, ...]) -> float:
    t = start
    for k, seconds in enumerate(stage_latency):
      free = self.stage_free[k]
      t = (t if t > free else free) + seconds
      self.stage_free[k] = t
    return t


def _batch_latencies(profile: ModelProfile, config: ParallelConfig, max_batch: int) -> list:
  on_config = profile.on(config)
  largest = min(max_batch, on_config.max_batch)
  return [None] + [on_config.latency(b) for b in range(1, largest + 1)]


def simulate(
    placement: Placement,
    profiles: Mapping[str, ModelProfile],
    trace: Trace,
    slo_s: Mapping[str, float] | float,
    *,
    max_batch: int = 1,
    max_queue: Optional[int] = None,
) -> Outcome:
  """Replays `trace` against `placement` (see the module docstring for the policy).

  `slo_s`: a model's latency objective in seconds (one number for every model, or by name).
  """
  if max_batch < 1 or (max_queue is not None and max_queue < 1):
    raise ConfigError(f"max_batch and max_queue must be >= 1; got {max_batch}, {max_queue}")
  names = trace.model_names
  index = {name: i for i, name in enumerate(names)}
  slo = [slo_s if isinstance(slo_s, (int, float)) else slo_s[name] for name in names]
  unprofiled = sorted({m for g in placement.groups for m in g.models} - set(profiles))
  if unprofiled:
    raise ConfigError(f"the placement holds models {unprofiled} that have no profile")
  states, holders = [], [[] for _ in names]
  for g in placement.groups:
    latency = {
        index[m]: _batch_latencies(profiles[m], g.config, max_batch) for m in g.models if m in index
    }
    for m in latency:
      holders[m].append(len(states))
    states.append(_GroupState(g.config.stages, latency))

  times = trace.times.tolist()
  models = trace.models.tolist()
  status = [UNPLACED] * len(times)
  latency_s = [math.nan] * len(times)

  def advance(state: _GroupState, until: float) -> None:
    """Dispatches the batches that start before `until`."""
    queue = state.queue
    while queue:
      head = queue[0]
      free = state.stage_free[0]
      start = free if free > times[head] else times[head]
      if start >= until:
        return
      m = models[head]
      table = state.latency[m]
      deadline = times[head] + slo[m]
      if state.finish(start, table[1]) > deadline:
        queue.popleft()
        status[head] = DROPPED
        continue
      members = [head]
      if len(table) > 2:  # every queued request has arrived by `start` (arrivals are in order)
        for r in itertools.islice(queue, 1, None):
          if len(members) == len(table) - 1:
            break
          if models[r] == m:
            members.append(r)
        while state.finish(start, table[len(members)]) > deadline:
          members.pop()
      if len(members) == 1:
        queue.popleft()
      else:
        batch = set(members)
        state.queue = queue = collections.deque(r for r in queue if r not in batch)
      end = state.run(start, table[len(members)])
      for r in members:
        status[r] = SERVED
        latency_s[r] = end - times[r]

  for request, (t, m) in enumerate(zip(times, models)):
    best = None
    for g in holders[m]:
      state = states[g]
      advance(state, t)
      key = (len(state.queue), state.stage_free[0])
      if best is None or key < best[0]:
        best = (key, state)
    if best is None:
      continue
    state = best[1]
    if max_queue is not None and len(state.queue) >= max_queue:
      status[request] = REJECTED
      continue
    status[request] = DROPPED  # until a batch serves it
    state.queue.append(request)
  for state in states:
    advance(state, math.inf)
  return Outcome(trace, np.asarray(status, dtype=np.int8), np.asarray(latency_s))
