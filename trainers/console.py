"""What a command line shows: one format for warnings, and the libraries' own logs (absl's
warnings, TensorFlow's import banner, held back by `model_zoo.native_logs`) only with
`--verbose` or PODZOO_VERBOSE=1.
"""

import logging
import os
import sys

from model_zoo.native_logs import VERBOSE_ENV, verbose


def configure_logging() -> None:
  """One format for the process's log lines ("WARNING: ..."), whoever configured it before.

  Called once per process by the console scripts, not by `main()`, so that a host
  (pytest, a notebook) keeps its own logging.
  """
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", force=True)
  sys.unraisablehook = _unraisable_hook


def _unraisable_hook(unraisable) -> None:
  """Drops tensorstore's "Event loop is closed" errors, raised by writes that finish after a
  failed checkpoint save (e.g. a full disk) was already reported; others print as usual."""
  closed = isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(
      unraisable.exc_value
  )
  if verbose() or not closed:
    sys.__unraisablehook__(unraisable)


def set_verbose(on: bool) -> None:
  """Shows (True) or hides (False) the libraries' own logs: absl warnings, the TF banner."""
  os.environ[VERBOSE_ENV] = "1" if on else ""
  logging.getLogger("absl").setLevel(logging.NOTSET if on else logging.ERROR)
