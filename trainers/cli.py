"""Shared main() of the gin-configured entry points: flags, gin, multi-host, clean errors."""

import logging
import os
import sys
import traceback
from typing import Callable, Sequence

import gin
import jax

from trainers import distributed, gin_utils

USER_ERRORS = (ValueError, KeyError, FileNotFoundError, RuntimeError, ImportError)


def run(entry: Callable[[], object], argv: Sequence[str], prog: str) -> int:
  """Parses flags and gin, runs `entry()` (whose arguments come from gin); returns the exit code."""
  logging.basicConfig(level=logging.WARNING)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  gin.clear_config()  # main() may run more than once in a process (tests, notebooks)
  try:
    flags = gin_utils.parse_flags(argv, prog)
    distributed.initialize(
        flags.multihost, flags.coordinator_address, flags.num_processes, flags.process_id
    )
    import_configurables()
    gin_utils.parse_gin(flags)
    entry()
  except USER_ERRORS as e:
    if os.environ.get("PODZOO_DEBUG"):
      traceback.print_exc()
    print(f"ERROR: {_first_lines(e)}", file=sys.stderr, flush=True)
    return 1
  return 0


def _first_lines(e: BaseException) -> str:
  text = str(e) or type(e).__name__
  if isinstance(e, KeyError) and text.startswith(("'", '"')):
    text = text[1:-1]
  return text


def import_configurables() -> None:
  """Registers every gin configurable of the core, so config files can bind them."""
  # pylint: disable=g-import-not-at-top,unused-import
  import model_zoo.config
  import model_zoo.dense
  import model_zoo.models
  import trainers.checkpoints
  import trainers.data
  import trainers.decoding.beam_search
  import trainers.decoding.sampling
  import trainers.optimizers
  import trainers.partitioning
  import trainers.trainer


def say(message: str) -> None:
  """Progress for the user, once per job (process 0)."""
  if jax.process_index() == 0:
    print(message, flush=True)
