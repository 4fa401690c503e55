"""Shared main() of the gin-configured entry points: flags, gin, multi-host, clean errors.

A user's mistake (a `model_zoo.errors.UserError`) prints "ERROR: <message>" and exits 1;
any other exception is a bug and prints its traceback (exit 1). A run stopped by a preemption
notice (SIGTERM) after saving exits 143. `--help` prints the usage,
the macros a run config sets and where the gin files are (exit 0). TensorFlow's import
banner and absl's warnings stay hidden unless `--verbose` (or PODZOO_VERBOSE=1).
"""

import os
import re
import sys
import traceback
from typing import Callable, Sequence

import gin
import jax

from model_zoo.errors import UserError
from trainers import console, distributed, gin_utils, preemption

_GIN_CONTEXT = re.compile(r"^\s+In call to configurable '[^']*' \(.*\)$")


def run(entry: Callable[[], object], argv: Sequence[str], prog: str) -> int:
  """Parses flags and gin, runs `entry()` (whose arguments come from gin); returns the exit code."""
  gin.clear_config()  # main() may run more than once in a process (tests, notebooks)
  try:
    flags = gin_utils.parse_flags(argv, prog)
    if flags.help:
      print(gin_utils.help_text(prog), flush=True)
      return 0
    console.set_verbose(flags.verbose or console.verbose())
    distributed.initialize(
        flags.multihost, flags.coordinator_address, flags.num_processes, flags.process_id
    )
    import_configurables()
    gin_utils.parse_gin(flags)
    entry()
  except preemption.Preempted as e:  # saved and stopped: the scheduler restarts the job
    say(_without_gin_context(str(e)))
    return preemption.EXIT_CODE
  except UserError as e:
    if os.environ.get("PODZOO_DEBUG"):
      traceback.print_exc()
    print(f"ERROR: {_without_gin_context(str(e))}", file=sys.stderr, flush=True)
    return 1
  except Exception:  # pylint: disable=broad-except  (a bug: show where)
    traceback.print_exc()
    return 1
  return 0


def _without_gin_context(message: str) -> str:
  """The message without the "In call to configurable ..." lines gin appends on the way up."""
  return "\n".join(line for line in message.splitlines() if not _GIN_CONTEXT.match(line))


def entry_point(entry: Callable[[], object], prog: str):
  """(main(argv) -> exit code, console_main()) of `python -m trainers.<prog>`."""

  def main(argv: Sequence[str]) -> int:
    return run(entry, argv, prog)

  def console_main() -> None:
    console.configure_logging()
    sys.exit(main(sys.argv[1:]))

  return main, console_main


def import_configurables() -> None:
  """Registers every gin configurable of the core, so config files can bind them."""
  # pylint: disable=g-import-not-at-top,unused-import
  import model_zoo.asr.model
  import model_zoo.config
  import model_zoo.dense
  import model_zoo.lifelong
  import model_zoo.lora
  import model_zoo.models
  import model_zoo.prefix_scorer
  import model_zoo.spae.model
  import trainers.checkpoints
  import trainers.dataset_config
  import trainers.initial_checkpoint
  import model_zoo.decoding.beam_search
  import model_zoo.decoding.controlled
  import model_zoo.decoding.lm_fusion
  import model_zoo.decoding.sampling
  import trainers.optimizers
  import trainers.partitioning
  import trainers.controlled_decoding
  import trainers.shallow_fusion
  import trainers.trainer


def say(message: str) -> None:
  """Progress for the user, once per job (process 0)."""
  if jax.process_index() == 0:
    print(message, flush=True)
