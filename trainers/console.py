"""What a command line shows: warnings for the user, and TensorFlow's import banner and
absl's warnings only when asked for.

Importing TensorFlow prints C++ log lines straight to file descriptor 2 (oneDNN, "could not
find cuda drivers", a cuInit error on machines without a GPU), which no Python logging
setting reaches. `native_stderr_held()` holds them back and replays them if the import
fails, so nothing that explains a failure is lost (a user's mistake, already explained,
replays nothing). `PODZOO_VERBOSE=1` (the CLIs' `--verbose` flag sets it) shows
everything, as TensorFlow and absl print it.
"""

import contextlib
import logging
import os
import sys
import tempfile
from typing import Iterator

from model_zoo.errors import UserError

VERBOSE_ENV = "PODZOO_VERBOSE"


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


def verbose() -> bool:
  return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def set_verbose(on: bool) -> None:
  """Shows (True) or hides (False) the libraries' own logs: absl warnings, the TF banner."""
  os.environ[VERBOSE_ENV] = "1" if on else ""
  logging.getLogger("absl").setLevel(logging.NOTSET if on else logging.ERROR)


@contextlib.contextmanager
def native_stderr_held() -> Iterator[None]:
  """Writes to fd 2 inside the block are kept aside; replayed if a bug (not a UserError) escapes."""
  if verbose():
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    except Exception as e:
      if not isinstance(e, UserError):  # what the libraries printed may explain it
        os.dup2(saved, 2)
        held.seek(0)
        os.write(2, held.read())
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)
