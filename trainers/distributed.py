"""Multi-host start-up: `jax.distributed.initialize` from flags or the environment.

On TPU pods and SLURM/GKE clusters JAX discovers the coordinator itself (pass --multihost).
Elsewhere (and for local multi-process tests) give the coordinator, process count and id
as flags or as PODZOO_COORDINATOR_ADDRESS / PODZOO_NUM_PROCESSES / PODZOO_PROCESS_ID.
"""

import os
from typing import Optional

import jax


def initialize(
    multihost: bool = False,
    coordinator_address: Optional[str] = None,
    num_processes: Optional[int] = None,
    process_id: Optional[int] = None,
) -> None:
  coordinator_address = coordinator_address or os.environ.get("PODZOO_COORDINATOR_ADDRESS")
  if num_processes is None and "PODZOO_NUM_PROCESSES" in os.environ:
    num_processes = int(os.environ["PODZOO_NUM_PROCESSES"])
  if process_id is None and "PODZOO_PROCESS_ID" in os.environ:
    process_id = int(os.environ["PODZOO_PROCESS_ID"])
  if coordinator_address is None and not multihost:
    return
  # Only affects CPU devices (local multi-process runs); harmless elsewhere. Querying the
  # backend here would start JAX before initialize(), which it forbids.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
  )
