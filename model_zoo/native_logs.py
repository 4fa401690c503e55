"""C++ libraries' log lines on file descriptor 2, held back unless PODZOO_VERBOSE=1.

Importing TensorFlow prints straight to fd 2 (oneDNN, "could not find cuda drivers", a
cuInit error on machines without a GPU), which no Python logging setting reaches.
`native_stderr_held()` keeps those lines aside and replays them if a bug escapes the
block, so nothing that explains a failure is lost (a user's mistake, already explained,
replays nothing). `tasks/tfenv.py` imports TensorFlow inside it; `PODZOO_VERBOSE=1` (the
CLIs' `--verbose` sets it) shows everything as the libraries print it.
"""

import contextlib
import os
import sys
import tempfile
from typing import Iterator

from model_zoo.errors import UserError

VERBOSE_ENV = "PODZOO_VERBOSE"


def verbose() -> bool:
  return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


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
