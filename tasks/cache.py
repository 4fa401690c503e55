"""Where podzoo keeps derived files (vocabularies, split text), and how they get there safely.

Several processes (hosts of one run, parallel tests) may build the same file at once, so
every write goes to a temporary file in the target directory and is moved into place with
`os.replace`: a reader sees the old file or the complete new one, never half of it.
"""

import contextlib
import fcntl
import os
import pathlib
import tempfile
from typing import Iterator

CACHE_ENV = "PODZOO_CACHE"


def cache_dir(name: str) -> pathlib.Path:
  """`$PODZOO_CACHE/<name>`, or `~/.cache/podzoo/<name>` when the variable is unset; created."""
  root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "podzoo")
  path = pathlib.Path(root, name)
  path.mkdir(parents=True, exist_ok=True)
  return path


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` to `path` so that no reader ever sees a partial file."""
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache must be readable by all
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
  """Holds an exclusive lock on `path` (created if missing): one process builds a dataset while
  the others wait, then find it built."""
  with open(path, "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
