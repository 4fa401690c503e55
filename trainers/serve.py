"""`python -m trainers.serve --gin_file=gin/runs/serve.gin --gin.SERVED_MODELS=...`: serves
several finished runs at once over HTTP, placed on this machine's devices (AlpaServe).

  python -m trainers.serve --gin_file=gin/runs/serve.gin \
      --gin.SERVED_MODELS="{'small': '/tmp/run_a', 'big': '/tmp/run_b'}" \
      --gin.serve.placement="'1x2:small,big 2x1:big'"

Each served model is the run in its MODEL_DIR (its config.gin and newest checkpoint). The
placement lists the device groups, STAGESxTENSOR and the models each holds; the groups take
the devices in order (default: one single-device group per model). trainers/serving/
http_app.py documents the API. The server listens on 127.0.0.1 unless serve.host names
another address, which needs a token: the environment variable serve.token_env names
(PODZOO_SERVE_TOKEN) must hold it, and every request then carries it as a Bearer token.
SIGINT or SIGTERM stops it gracefully: every accepted request is answered first (within
serve.shutdown_timeout_s), then the process ends with that signal's status, as uvicorn does.

Beyond one machine, serve.backend='ray' runs each group as a Ray Serve deployment
(trainers/serving/ray_groups.py) on the Ray cluster at serve.ray_address (None starts one on
this machine), each group on one node with serve.ray_device devices ('gpu', 'tpu', or 'cpu':
a core a device); this process keeps the HTTP API. The run directories must be on a file
system every node sees.
"""

import asyncio
import contextlib
import os
from typing import Mapping, Optional

import gin
import jax

from model_zoo.errors import ConfigError
from trainers import cli
from trainers.serving import engine as engine_lib
from trainers.serving import http_app, profiles, runs
from trainers.serving.simulator import Group, Placement
from trainers.serving.profiles import ParallelConfig

LOOPBACK = ("127.0.0.1", "::1", "localhost")
BACKENDS = ("local", "ray")


def check_host(host: str, token: Optional[str], token_env: str) -> None:
  if host not in LOOPBACK and not token:
    raise ConfigError(
        f"serve.host={host!r} listens beyond this machine, so requests must carry a token: set "
        f"the environment variable {token_env} to a secret (and send it as 'Authorization: "
        "Bearer <token>'), or keep serve.host='127.0.0.1'"
    )


@gin.configurable
def serve(
    models: Mapping[str, str] = gin.REQUIRED,
    placement: Optional[str] = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    token_env: str = "PODZOO_SERVE_TOKEN",
    slo_s: Optional[Mapping[str, float]] = None,
    profile_file: Optional[str] = None,
    max_batch: int = engine_lib.MAX_BATCH,
    max_queue: int = engine_lib.MAX_QUEUE,
    max_rows_per_request: int = 8,
    max_decode_length: int = 256,
    max_body_bytes: int = http_app.MAX_BODY_BYTES,
    shutdown_timeout_s: float = 30.0,
    backend: str = "local",
    ray_address: Optional[str] = None,
    ray_device: str = "cpu",
) -> None:
  """Loads the runs, places them, and serves until stopped (see the module docstring)."""
  token = os.environ.get(token_env) or None
  check_host(host, token, token_env)
  if not models:
    raise ConfigError("serve.models (SERVED_MODELS) is empty: name at least one run to serve")
  names = list(models)
  chosen = (
      runs.parse_placement(placement, names)
      if placement
      else Placement(tuple(Group(ParallelConfig(1, 1), (name,)) for name in names))
  )
  measured = profiles.load(profile_file) if profile_file else None
  options = dict(
      max_batch=max_batch,
      max_queue=max_queue,
      max_rows_per_request=max_rows_per_request,
      max_decode_length=max_decode_length,
  )
  if backend not in BACKENDS:
    raise ConfigError(f"serve.backend={backend!r}; expected one of {list(BACKENDS)}")
  cli.say(f"Loading {names} and compiling them for batches of up to {max_batch} rows ...")
  if backend == "ray":
    from trainers.serving import ray_groups  # pylint: disable=g-import-not-at-top  ([ray] extra)

    runs.check_slo_names(dict(models), dict(slo_s or {}))
    for name, model_dir in models.items():  # the group actors load them: check them first
      runs.run_config(name, model_dir)
    engine = ray_groups.deploy(
        dict(models),
        chosen,
        ray_address=ray_address,
        device_kind=ray_device,
        slo_s=dict(slo_s or {}),
        engine_options=options,
        profiles=measured,
    )
  else:
    served = runs.load_all(dict(models), dict(slo_s or {}))
    engine = engine_lib.Engine(served, chosen, jax.devices(), profiles=measured, **options)
    engine.warm_up()
  import uvicorn  # pylint: disable=g-import-not-at-top  (the [serve] extra)

  @contextlib.asynccontextmanager
  async def lifespan(app):
    del app
    yield
    # uvicorn has stopped taking requests and answered those it had (up to the timeout).
    unserved = await asyncio.to_thread(engine.close, shutdown_timeout_s)
    cli.say(
        "Stopped: every accepted request was answered."
        if not unserved
        else f"Stopped: {unserved} queued requests were told the server shut down."
    )

  app = http_app.create_app(engine, token=token, max_body_bytes=max_body_bytes, lifespan=lifespan)
  cli.say(f"Serving {names} as {chosen} on http://{host}:{port} (Ctrl-C stops it)")
  try:
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=int(shutdown_timeout_s),
    )
  finally:
    engine.close(0.0)  # when uvicorn could not start (a port in use): nothing was accepted


main, console_main = cli.entry_point(lambda: serve(), "serve")

if __name__ == "__main__":
  console_main()
