"""Multi-host start-up: `jax.distributed.initialize` from flags or the environment.

On TPU pods and SLURM/GKE clusters JAX discovers the coordinator itself (pass --multihost).
Elsewhere (and for local multi-process tests) give the coordinator, process count and id
as flags or as PODZOO_COORDINATOR_ADDRESS / PODZOO_NUM_PROCESSES / PODZOO_PROCESS_ID.
"""

import os
from typing import Optional

import jax

from model_zoo.errors import ConfigError

_SETTINGS = (
    "--coordinator_address/--num_processes/--process_id (or PODZOO_COORDINATOR_ADDRESS, "
    "PODZOO_NUM_PROCESSES, PODZOO_PROCESS_ID)"
)


def _env_int(name: str) -> Optional[int]:
  if name not in os.environ:
    return None
  try:
    return int(os.environ[name])
  except ValueError:
    raise ConfigError(f"{name}={os.environ[name]!r} must be an integer.") from None


def initialize(
    multihost: bool = False,
    coordinator_address: Optional[str] = None,
    num_processes: Optional[int] = None,
    process_id: Optional[int] = None,
) -> None:
  coordinator_address = coordinator_address or os.environ.get("PODZOO_COORDINATOR_ADDRESS")
  if num_processes is None:
    num_processes = _env_int("PODZOO_NUM_PROCESSES")
  if process_id is None:
    process_id = _env_int("PODZOO_PROCESS_ID")
  if coordinator_address is None and not multihost:
    return
  if coordinator_address is not None and ":" not in coordinator_address:
    raise ConfigError(
        f"coordinator_address={coordinator_address!r} needs a port: give HOST:PORT "
        "(--coordinator_address or PODZOO_COORDINATOR_ADDRESS)."
    )
  # Only affects CPU devices (local multi-process runs); harmless elsewhere. Querying the
  # backend here would start JAX before initialize(), which it forbids.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
  except (ValueError, TypeError) as e:  # JAX's checks of the three settings
    raise ConfigError(
        f"Cannot start a multi-host run: {e} Set {_SETTINGS}, or run on a cluster whose "
        "environment JAX detects (TPU pod, SLURM) with --multihost alone."
    ) from e
  except jax.errors.JaxRuntimeError as e:  # e.g. the coordinator's port is taken
    raise ConfigError(
        f"Cannot start or join the multi-host run at coordinator {coordinator_address!r}: "
        f"{str(e)[:300]}. Check {_SETTINGS} (a free port on process 0's host)."
    ) from e
