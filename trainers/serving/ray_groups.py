"""The placement's device groups as Ray Serve deployments, for serving beyond one machine.

Each group is a deployment of one replica, an actor of its own that Ray schedules on a node
with the group's devices (`num_gpus`, the `TPU` resource, or CPUs standing in as devices),
and that runs the group as this machine's server would: an Engine over a one-group placement,
with its queue, batching and SLO dropping. A router deployment (the application's ingress)
sends each request to the group holding its model with the fewest unanswered requests, the
engine's own policy. `RayEngine`, in the process that runs the HTTP app, gives the router the
Engine's face, so trainers/serving/http_app.py serves either.

A group runs on one node (its devices are that actor's); the models are loaded by the group
actors from their run directories (a file system every node sees), or passed in whole.
Ray itself is the `[ray]` extra; this module is imported only when serving on Ray.
"""

import asyncio
import dataclasses
import signal
import threading
import time
from typing import Any, Mapping, Optional, Sequence, Union

import jax  # its devices are read when first used: in a group's actor, those Ray gave it
import ray
from ray import serve

from model_zoo.decoding.sampling import Sampling
from model_zoo.errors import ConfigError
from trainers.serving import engine as engine_lib
from trainers.serving import errors as errors_lib
from trainers.serving import runs
from trainers.serving.errors import ServingError, Unavailable, UnknownModel
from trainers.serving.profiles import ModelProfile
from trainers.serving.replica import ServedModel
from trainers.serving.simulator import Group, Placement
from trainers.serving import stats

DEVICE_KINDS = ("cpu", "gpu", "tpu")
# A group takes at most this many requests beyond its engine's queue and batches, so that
# the engine, not Ray, answers overload (429).
_MAX_ONGOING_SLACK = 8


def actor_options(devices: int, device_kind: str) -> dict:
  """What a group of `devices` asks Ray for. On "cpu" each device is a CPU core that JAX
  presents as a device of its own (XLA's host platform device count)."""
  if device_kind == "gpu":
    return {"num_cpus": 1, "num_gpus": devices}
  if device_kind == "tpu":
    return {"num_cpus": 1, "resources": {"TPU": devices}}
  if device_kind == "cpu":
    flags = f"--xla_force_host_platform_device_count={devices}"
    env = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
    return {"num_cpus": devices, "runtime_env": {"env_vars": env}}
  raise ConfigError(f"serve.ray_device={device_kind!r}; expected one of {list(DEVICE_KINDS)}")


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  """What the front end knows of a served model (its weights stay in the groups)."""

  name: str
  max_length: int
  slo_s: Optional[float]


class GroupServer:
  """One group's Engine in a Ray actor, on the devices Ray gave it."""

  def __init__(
      self,
      group: Group,
      models: Mapping[str, Union[ServedModel, str]],
      slo_s: Mapping[str, float],
      engine_options: Mapping[str, Any],
      profiles: Optional[Mapping[str, ModelProfile]],
      warm_up: bool,
  ):
    served = [
        runs.load(name, models[name], slo_s.get(name))
        if isinstance(models[name], str)
        else models[name]
        for name in group.models
    ]
    self.engine = engine_lib.Engine(
        served, Placement((group,)), jax.devices(), profiles=profiles, **engine_options
    )
    if warm_up:
      self.engine.warm_up()

  def describe(self) -> dict:
    """The group's models and the devices it runs on."""
    return {
        "models": [ModelInfo(m.name, m.max_length, m.slo_s) for m in self.engine.models.values()],
        "devices": [str(d) for d in jax.devices()],
    }

  async def request(self, kind: str, name: str, *args) -> tuple:
    """("ok", outputs) or ("error", the ServingError's class name, message, Retry-After): a
    user's error crosses back as data; a bug raises (the front end answers 500)."""
    try:
      return "ok", await asyncio.wrap_future(getattr(self.engine, kind)(name, *args))
    except ServingError as e:
      return "error", type(e).__name__, str(e), e.retry_after_s

  def queue_length(self) -> int:
    return sum(len(g.queue) for g in self.engine.groups)

  def __del__(self):
    # Ray Serve calls it when the replica stops: answer what was accepted first.
    self.engine.close()


class Router:
  """The application's ingress: each request to the least loaded group holding its model."""

  def __init__(self, groups: Sequence[Any], models: Sequence[Sequence[str]]):
    self.groups, self.models = list(groups), [set(m) for m in models]
    self.unanswered = [0] * len(self.groups)

  async def describe(self) -> list[dict]:
    return list(await asyncio.gather(*(g.describe.remote() for g in self.groups)))

  async def request(self, kind: str, name: str, *args) -> tuple:
    holders = [i for i, models in enumerate(self.models) if name in models]
    i = min(holders, key=lambda i: self.unanswered[i])
    self.unanswered[i] += 1
    try:
      return await self.groups[i].request.remote(kind, name, *args)
    finally:
      self.unanswered[i] -= 1

  async def queue_lengths(self) -> list[int]:
    return list(await asyncio.gather(*(g.queue_length.remote() for g in self.groups)))


def _max_ongoing(group: Group, engine_options: Mapping[str, Any]) -> int:
  max_batch = engine_options.get("max_batch", engine_lib.MAX_BATCH)
  return (
      engine_options.get("max_queue", engine_lib.MAX_QUEUE)
      + max_batch * group.config.stages
      + _MAX_ONGOING_SLACK
  )


def deploy(
    models: Mapping[str, Union[ServedModel, str]],
    placement: Placement,
    *,
    ray_address: Optional[str] = None,
    device_kind: str = "cpu",
    slo_s: Optional[Mapping[str, float]] = None,
    engine_options: Optional[Mapping[str, Any]] = None,
    profiles: Optional[Mapping[str, ModelProfile]] = None,
    warm_up: bool = True,
    app_name: str = "podzoo",
) -> "RayEngine":
  """Deploys `placement` on the Ray cluster at `ray_address` (None: the one this process is
  connected to, or one it starts on this machine) and returns its front."""
  engine_options = dict(engine_options or {})
  unplaced = sorted(set(models) - {m for g in placement.groups for m in g.models})
  if unplaced:
    raise ConfigError(f"the placement ({placement}) does not place {unplaced}")
  started = _connect(ray_address, placement.devices if device_kind == "cpu" else None)
  groups = []
  for index, group in enumerate(placement.groups):
    deployment = serve.deployment(
        GroupServer,
        name=f"group_{index}",
        num_replicas=1,
        ray_actor_options=actor_options(group.config.devices, device_kind),
        max_ongoing_requests=_max_ongoing(group, engine_options),
        health_check_timeout_s=120,
        max_constructor_retry_count=1,  # a group that cannot load fails the deploy at once
    )
    own = {name: models[name] for name in group.models}
    groups.append(deployment.bind(group, own, dict(slo_s or {}), engine_options, profiles, warm_up))
  router = serve.deployment(
      Router, name="router", max_ongoing_requests=10_000, ray_actor_options={"num_cpus": 0}
  )
  # No Ray Serve HTTP proxy: this process's own server (its token and bounds) is the only
  # way in, and Ray's default port would be the same as serve.port's.
  serve.start(proxy_location="Disabled")
  handle = serve.run(
      router.bind(groups, [g.models for g in placement.groups]), name=app_name, route_prefix=None
  )
  return RayEngine(handle, placement, app_name, stops_ray=started)


class RayEngine:
  """The Engine's face (trainers/serving/http_app.Frontend) over a deployed placement."""

  def __init__(self, router: Any, placement: Placement, app_name: str, stops_ray: bool = False):
    self.router, self.placement, self.app_name = router, placement, app_name
    self.stops_ray = stops_ray
    described = router.describe.remote().result()
    self.models = {m.name: m for d in described for m in d["models"]}
    self.group_devices = [d["devices"] for d in described]
    self.stats = stats.RequestStats(self.models)
    self.closing = False

  def placed(self) -> dict[str, list[dict]]:
    where = {name: [] for name in self.models}
    for index, group in enumerate(self.placement.groups):
      for name in group.models:
        where[name].append({"group": index, "parallel": str(group.config)})
    return where

  def _check(self, name: str) -> None:
    if self.closing:
      raise Unavailable("the server is shutting down", retry_after_s=None)
    if name not in self.models:
      raise UnknownModel(f"no model named {name!r}; this server serves {sorted(self.models)}")

  async def _request(self, kind: str, name: str, *args) -> Any:
    arrival = time.monotonic()
    answer = await self.router.request.remote(kind, name, *args)
    if answer[0] == "ok":
      self.stats.record(name, kind, "ok", arrival)
      return answer[1]
    _, error_name, message, retry_after_s = answer
    error = getattr(errors_lib, error_name)(message)
    error.retry_after_s = retry_after_s
    self.stats.record(name, kind, stats.outcome(error))
    raise error

  def generate(
      self,
      name: str,
      prompts: Sequence[str],
      decoder: Sampling,
      max_decode_length: Optional[int] = None,
  ):
    self._check(name)
    return self._request("generate", name, list(prompts), decoder, max_decode_length)

  def score(self, name: str, prompts: Sequence[str], targets: Sequence[str]):
    self._check(name)
    return self._request("score", name, list(prompts), list(targets))

  async def metrics(self) -> dict[str, Any]:
    return {**self.stats.snapshot(), "queue_length": await self.router.queue_lengths.remote()}

  def close(self, timeout_s: float = 30.0) -> int:
    """Takes no new request and deletes the application (Ray Serve lets each group answer
    what it accepted first), then stops Ray if deploy started it; 0: the HTTP server has
    already answered its requests."""
    del timeout_s  # each group's graceful_shutdown_timeout_s bounds it
    if not self.closing:
      self.closing = True
      serve.delete(self.app_name)
      if self.stops_ray:
        ray.shutdown()
    return 0


def _connect(address: Optional[str], num_cpus: Optional[int]) -> bool:
  """Connects to the Ray cluster at `address`, or starts one on this machine (None); True
  when this process started it. The process keeps its own SIGINT and SIGTERM handling (a
  server ends by the signal, after answering what it accepted)."""
  if ray.is_initialized():
    return False
  handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  ray.init(
      address=address,
      num_cpus=num_cpus if address is None else None,
      include_dashboard=False,
      log_to_driver=False,
  )
  if threading.current_thread() is threading.main_thread():
    for signum, handler in handlers.items():
      signal.signal(signum, handler)
  return address is None
