"""The serving engine: models placed on device groups, a bounded queue per group, batching,
SLO-aware dropping and a graceful close. The HTTP app (trainers/serving/http_app.py) is a
thin layer over it.

It runs the simulator's policy (trainers/serving/simulator.py), so the simulator predicts it:
a request goes to the group holding its model with the shortest queue, and is refused with
429 when that queue is full; each group's worker takes the request at its head and the
queued requests of the same model and kind (and decoder) up to `max_batch` rows; a request
whose model has an SLO is dropped (503) when, by the group's profile, it would finish late
even alone, and a batch is cut to what meets its head's deadline. A group has up to
`stages` batches in flight: its worker waits for a free slot, then takes a batch (so its
SLO check is made when it can start) and dispatches it, and a collector thread waits for
the results and answers the requests.
"""

import collections
import concurrent.futures
import dataclasses
import itertools
import logging
import math
import queue as queue_lib
import threading
import time
from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np

from model_zoo.decoding.sampling import Sampling
from model_zoo.errors import ConfigError
from trainers import text_prediction
from trainers.serving.errors import BadRequest, Overloaded, Unavailable, UnknownModel
from trainers.serving.profiles import ModelProfile
from trainers.serving import replica as replica_lib
from trainers.serving.replica import Replica, ServedModel
from trainers.serving.simulator import Placement
from trainers.serving import stats

MAX_BATCH, MAX_QUEUE = 8, 64  # the defaults: rows a batch, requests a group's queue


@dataclasses.dataclass
class Job:
  """One request: its rows (score: (prompt ids, target ids); generate: prompt ids)."""

  model: str
  kind: str  # "score" or "generate"
  rows: list
  decoder: Optional[Sampling] = None
  max_decode_length: Optional[int] = None
  arrival: float = dataclasses.field(default_factory=time.monotonic)
  future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)

  @property
  def batch_key(self) -> tuple:
    return (self.model, self.kind, self.decoder)


class _Group:
  """A device group's replicas, queue, worker and collector threads."""

  def __init__(self, engine: "Engine", index: int, replicas: dict[str, Replica]):
    self.engine, self.index, self.replicas = engine, index, replicas
    self.queue: collections.deque[Job] = collections.deque()
    self.lock = threading.Condition()
    self.stopping = False
    stages = next(iter(replicas.values())).config.stages if replicas else 1
    self.in_flight = threading.Semaphore(stages)
    self.finished: queue_lib.Queue = queue_lib.Queue()
    self.batches = itertools.count()
    self.worker = threading.Thread(target=self._work, name=f"serve-group-{index}", daemon=True)
    self.collector = threading.Thread(
        target=self._collect, name=f"serve-collect-{index}", daemon=True
    )
    self.worker.start()
    self.collector.start()

  def _predicted_s(self, model: str, rows: int) -> float:
    """Seconds a batch of `rows` takes here, by the profile (0 without one)."""
    profile = self.engine.profiles.get(model)
    replica = self.replicas[model]
    if profile is None or replica.config not in profile.configs:
      return 0.0
    on = profile.on(replica.config)
    return sum(on.latency(min(rows, on.max_batch)))

  def _next_batch(self) -> Optional[list[Job]]:
    """Takes the next batch off the queue (dropping the requests that would be late); None
    when stopping with an empty queue."""
    with self.lock:
      while True:
        while not self.queue and not self.stopping:
          self.lock.wait()
        if not self.queue:
          return None
        head = self.queue[0]
        slo = self.engine.models[head.model].slo_s
        deadline = head.arrival + slo if slo is not None else math.inf
        now = time.monotonic()
        if now + self._predicted_s(head.model, len(head.rows)) > deadline:
          self.queue.popleft()
          self.engine.finish(
              head,
              Unavailable(
                  f"model {head.model!r} could not answer within its SLO of {slo:g} s under the "
                  "current load; retry later"
              ),
          )
          continue
        members, rows = [head], len(head.rows)
        for job in itertools.islice(self.queue, 1, None):
          if job.batch_key == head.batch_key and rows + len(job.rows) <= self.engine.max_batch:
            members.append(job)
            rows += len(job.rows)
        while len(members) > 1 and now + self._predicted_s(head.model, rows) > deadline:
          rows -= len(members.pop().rows)
        taken = {id(j) for j in members}
        self.queue = collections.deque(j for j in self.queue if id(j) not in taken)
        return members

  def _work(self) -> None:
    while True:
      # A free slot first, then the batch: its SLO check is made when it can start.
      self.in_flight.acquire()
      batch = self._next_batch()
      if batch is None:
        self.in_flight.release()
        break
      try:
        result = self._dispatch(batch)
      except Exception as e:  # pylint: disable=broad-except  (a bug: answer 500, keep serving)
        logging.exception("serving a batch of %s failed", batch[0].model)
        self.in_flight.release()
        for job in batch:
          self.engine.finish(job, e)
        continue
      self.finished.put((batch, result))
    self.finished.put(None)

  def _dispatch(self, batch: list[Job]) -> Any:
    head, replica = batch[0], self.replicas[batch[0].model]
    rows = [row for job in batch for row in job.rows]
    if head.kind == "score":
      return replica.score(rows)
    rng = jax.random.PRNGKey(next(self.batches))
    return replica.generate(rows, head.decoder, rng)

  def _collect(self) -> None:
    while (item := self.finished.get()) is not None:
      batch, result = item
      try:
        result = jax.tree.map(np.asarray, result)  # waits for the devices
      except Exception as e:  # pylint: disable=broad-except
        logging.exception("serving a batch of %s failed", batch[0].model)
        result = e
      finally:
        self.in_flight.release()
      start = 0
      for job in batch:
        rows = slice(start, start + len(job.rows))
        start += len(job.rows)
        if isinstance(result, Exception):
          self.engine.finish(job, result)
        elif job.kind == "score":
          self.engine.finish(job, [{"score": float(s)} for s in result[rows]])
        else:
          self.engine.finish(job, self.engine.texts(job, result[0][rows], result[1][rows]))


class Engine:
  """Serves `models` as `placement` puts them on `devices` (the groups take consecutive
  devices, in order)."""

  def __init__(
      self,
      models: Sequence[ServedModel],
      placement: Placement,
      devices: Sequence[jax.Device],
      *,
      max_batch: int = MAX_BATCH,
      max_queue: int = MAX_QUEUE,
      max_rows_per_request: int = 8,
      max_decode_length: int = 256,
      profiles: Optional[Mapping[str, ModelProfile]] = None,
  ):
    self.models = {m.name: m for m in models}
    self.max_batch, self.max_queue = max_batch, max_queue
    self.max_rows_per_request = min(max_rows_per_request, max_batch)
    self.max_decode_length = max_decode_length
    self.profiles = dict(profiles or {})
    self._check_placement(placement, devices)
    self.closing = False
    self.stats = stats.RequestStats(self.models)
    self.groups, start = [], 0
    for index, group in enumerate(placement.groups):
      mine = devices[start : start + group.config.devices]
      start += group.config.devices
      replicas = {m: Replica(self.models[m], group.config, mine) for m in group.models}
      self.groups.append(_Group(self, index, replicas))

  def warm_up(self, generate: bool = True) -> None:
    """Compiles every replica's programs for each batch size up to max_batch (scoring, and
    greedy generation), so that no request waits for a compilation."""
    sizes = sorted({replica_lib.padded_rows(n) for n in range(1, self.max_batch + 1)})
    for group in self.groups:
      for replica in group.replicas.values():
        for rows in sizes:
          jax.block_until_ready(replica.score([([1], [1])] * rows))
          if generate:
            rng = jax.random.PRNGKey(0)
            jax.block_until_ready(replica.generate([[1]] * rows, Sampling(temperature=0.0), rng))

  def _check_placement(self, placement: Placement, devices: Sequence[jax.Device]) -> None:
    if placement.devices > len(devices):
      raise ConfigError(
          f"the placement uses {placement.devices} devices ({placement}); {len(devices)} are here"
      )
    placed = {m for g in placement.groups for m in g.models}
    unknown = sorted(placed - set(self.models))
    unplaced = sorted(set(self.models) - placed)
    if unknown or unplaced:
      raise ConfigError(
          f"the placement ({placement}) must hold exactly the served models {sorted(self.models)}"
          f": {f'unknown {unknown}' if unknown else ''}{' ' if unknown and unplaced else ''}"
          f"{f'not placed {unplaced}' if unplaced else ''}"
      )

  # --- requests ------------------------------------------------------------------------------
  def model(self, name: str) -> ServedModel:
    if name not in self.models:
      raise UnknownModel(f"no model named {name!r}; this server serves {sorted(self.models)}")
    return self.models[name]

  def _check_rows(self, rows: Sequence[Any], what: str) -> None:
    if not 1 <= len(rows) <= self.max_rows_per_request:
      raise BadRequest(
          f"'{what}' must hold 1 to {self.max_rows_per_request} items; got {len(rows)}"
      )

  def _encode(self, served: ServedModel, text: str, field: str, room: int, target=False):
    ids = (served.codec.encode_target if target else served.codec.encode_prompt)(text)
    if len(ids) > room:
      raise BadRequest(
          f"'{field}' has {len(ids)} tokens; model {served.name!r} takes at most {room} here "
          f"(its row holds {served.max_length} tokens); shorten it"
      )
    return list(ids)

  def generate(
      self,
      name: str,
      prompts: Sequence[str],
      decoder: Sampling,
      max_decode_length: Optional[int] = None,
  ) -> concurrent.futures.Future:
    """Future of [{"output": text, "score": log-prob}] for each prompt."""
    served = self.model(name)
    self._check_rows(prompts, "prompts")
    if max_decode_length is not None and not 1 <= max_decode_length <= self.max_decode_length:
      raise BadRequest(f"'max_decode_length' must be in [1, {self.max_decode_length}]")
    ids = [self._encode(served, p, "prompts", served.max_length - 1) for p in prompts]
    return self._submit(Job(name, "generate", ids, decoder, max_decode_length))

  def score(
      self, name: str, prompts: Sequence[str], targets: Sequence[str]
  ) -> concurrent.futures.Future:
    """Future of [{"score": log p(target | prompt)}] for each pair."""
    served = self.model(name)
    self._check_rows(prompts, "prompts")
    if len(targets) != len(prompts):
      raise BadRequest(
          f"'targets' must hold one text per prompt: {len(targets)} for {len(prompts)}"
      )
    rows = []
    for prompt, target in zip(prompts, targets):
      p = self._encode(served, prompt, "prompts", served.max_length - 1)
      rows.append((p, self._encode(served, target, "targets", served.max_length - len(p), True)))
    return self._submit(Job(name, "score", rows))

  def _submit(self, job: Job) -> concurrent.futures.Future:
    if self.closing:
      raise Unavailable("the server is shutting down", retry_after_s=None)
    holders = [g for g in self.groups if job.model in g.replicas]
    group = min(holders, key=lambda g: len(g.queue))
    with group.lock:
      if len(group.queue) >= self.max_queue:
        error = Overloaded(
            f"every queue of model {job.model!r} is full ({self.max_queue} requests); retry later"
        )
        self.stats.record(job.model, job.kind, stats.outcome(error))
        raise error
      group.queue.append(job)
      group.lock.notify()
    return job.future

  # --- answers -------------------------------------------------------------------------------
  def texts(self, job: Job, ids: np.ndarray, scores: np.ndarray) -> list[dict]:
    codec, eos = self.models[job.model].codec, self.models[job.model].model.eos_id
    out = []
    for row, score in zip(ids, scores):
      row = row[: job.max_decode_length] if job.max_decode_length else row
      out.append(
          {
              "output": text_prediction.decode_tokens(codec.target_vocab, row, eos),
              "score": float(score),
          }
      )
    return out

  def finish(self, job: Job, result: Any) -> None:
    """Answers `job` with its outputs or an exception (once)."""
    if job.future.done():
      return
    if isinstance(result, Exception):
      self.stats.record(job.model, job.kind, stats.outcome(result))
      job.future.set_exception(result)
      return
    self.stats.record(job.model, job.kind, "ok", job.arrival)
    job.future.set_result(result)

  def close(self, timeout_s: float = 30.0) -> int:
    """Takes no new request, answers every queued one (or, past `timeout_s`, tells it the
    server is shutting down), then stops the threads; how many it could not serve."""
    self.closing = True
    for group in self.groups:
      with group.lock:
        group.stopping = True
        group.lock.notify_all()
    deadline, unserved = time.monotonic() + timeout_s, 0
    for group in self.groups:
      group.worker.join(max(0.0, deadline - time.monotonic()))
    for group in self.groups:
      with group.lock:
        left, group.queue = list(group.queue), collections.deque()
      for job in left:
        self.finish(job, Unavailable("the server shut down before serving it", None))
      unserved += len(left)
    for group in self.groups:
      group.collector.join(max(0.0, deadline - time.monotonic()))
    return unserved

  # --- metrics -------------------------------------------------------------------------------
  def metrics(self) -> dict[str, Any]:
    return {**self.stats.snapshot(), "queue_length": [len(g.queue) for g in self.groups]}

  def placed(self) -> dict[str, list[dict]]:
    """Each served model's groups: [{"group": index, "parallel": "STAGESxTENSOR"}]."""
    where = {name: [] for name in self.models}
    for group in self.groups:
      for name, replica in group.replicas.items():
        where[name].append({"group": group.index, "parallel": str(replica.config)})
    return where
