"""One live training run per MODEL_DIR, so that two runs never write the same checkpoints.

Process 0 of a run creates MODEL_DIR/.lock with O_EXCL (of racing creators exactly one
succeeds), holding JSON that names the run: host, pid, start time, command line, the pid's
start in clock ticks (so that a recycled pid is not taken for it) and a random token. The
training loop calls `heartbeat()`, which refreshes the file's mtime; the lock is removed when
the run ends, normally or by an exception. Other processes of a multi-host run hold nothing.

An existing lock is stale, and taken over with a warning, when its process on this host no
longer runs, or when it comes from another host (whose processes cannot be checked) or cannot
be read, and was not refreshed for `stale_after_s`. Otherwise the run is refused with a
`RunLockedError` naming the holder and the fix. Taking over is serialized by a second O_EXCL
file, MODEL_DIR/.lock.takeover, inside which the lock is read again and removed only if
unchanged, so two runs racing for one stale lock cannot both win. A run whose lock was taken
over all the same (it went `stale_after_s` without a heartbeat) stops at its next heartbeat
rather than write checkpoints beside the new run.
"""

import datetime
import json
import logging
import os
import shlex
import socket
import sys
import time
from typing import NamedTuple, Optional
import uuid

import gin
import jax

from model_zoo.errors import ConfigError

LOCK_NAME = ".lock"
STALE_AFTER_S = 600.0
_BEATS_PER_STALE = 10  # a live run refreshes its lock this many times within stale_after_s
_ATTEMPTS = 5  # tries to take a lock that other runs keep creating or removing meanwhile


class RunLockedError(ConfigError):
  """MODEL_DIR is held by another run (or was taken from this one); two runs must not share it."""


class _Snapshot(NamedTuple):
  """A lock file as read once; two equal snapshots mean it did not change in between."""

  content: bytes
  mtime_ns: int
  inode: int


def _read(path: str) -> Optional[_Snapshot]:
  try:
    with open(path, "rb") as f:
      stat = os.fstat(f.fileno())
      return _Snapshot(f.read(), stat.st_mtime_ns, stat.st_ino)
  except FileNotFoundError:
    return None


def _holder(content: bytes) -> Optional[dict]:
  """The run that a lock names, or None for a damaged lock (empty, half written, not ours)."""
  try:
    holder = json.loads(content)
  except ValueError:
    return None
  pid = holder.get("pid") if isinstance(holder, dict) else None
  # pid 0 or -1 would make os.kill signal a whole process group.
  if type(pid) is not int or not 0 < pid < 2**31 or not isinstance(holder.get("host"), str):
    return None
  return holder


def _proc_stat(pid: int) -> Optional[tuple[str, int]]:
  """(state, start time in clock ticks since boot) of process `pid`, where /proc has it."""
  try:
    with open(f"/proc/{pid}/stat", "rb") as f:
      stat = f.read()
  except OSError:
    return None
  fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (command) "; a command may hold ")"
  return fields[0].decode(), int(fields[19])


def _running(holder: dict) -> bool:
  """Whether the holder's process (on this host) runs: it exists, is not a zombie, and is not
  a later process that was given the same pid."""
  try:
    os.kill(holder["pid"], 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # it exists, as another user's process
    pass
  stat = _proc_stat(holder["pid"])
  return stat is None or (stat[0] != "Z" and holder.get("start_ticks") in (None, stat[1]))


def _this_run() -> dict:
  stat = _proc_stat(os.getpid())
  return {
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": shlex.join(sys.argv),
      "start_ticks": stat[1] if stat else None,
      "token": uuid.uuid4().hex,
  }


def _stale_reason(path: str, seen: _Snapshot, stale_after_s: float) -> str:
  """Why the lock `seen` may be taken over; raises RunLockedError while a run holds it."""
  holder, age = _holder(seen.content), time.time() - seen.mtime_ns / 1e9
  fix = f"Stop that run, or use another MODEL_DIR; if that run is gone, delete {path}."
  if holder is None:
    if age < stale_after_s:
      raise RunLockedError(
          f"The lock {path} is empty or unreadable and {age:.0f} s old: another run may be "
          f"starting on this MODEL_DIR (or one stopped while writing it). {fix}"
      )
    return f"it is empty or unreadable and {age:.0f} s old"
  who = f"process {holder['pid']} on host {holder['host']}, started {holder.get('started')}"
  model_dir = os.path.dirname(path)
  if holder["host"] == socket.gethostname():
    if _running(holder):
      raise RunLockedError(
          f"MODEL_DIR {model_dir} is in use by a live run ({who}), which holds {path}. {fix}"
      )
    return f"{who}, no longer runs"
  if age < stale_after_s:
    raise RunLockedError(
        f"MODEL_DIR {model_dir} is in use by a run on another host ({who}), which refreshed "
        f"{path} {age:.0f} s ago; a lock counts as stale once not refreshed for "
        f"{stale_after_s:.0f} s (held.stale_after_s). {fix}"
    )
  return f"{who}, has not refreshed it for {age:.0f} s"


def _create(path: str, content: bytes) -> bool:
  """Creates `path` holding `content`; False if it exists (of racing creators one succeeds)."""
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  except OSError as e:
    raise ConfigError(
        f"Cannot create the lock {path} ({e.strerror}); set --gin.MODEL_DIR to a writable "
        "directory."
    ) from e
  with os.fdopen(fd, "wb") as f:
    f.write(content)
  return True


def _take_over(path: str, seen: _Snapshot, content: bytes, reason: str) -> bool:
  """Replaces the stale lock `seen` by `content`; False if the lock changed meanwhile.

  Only the process that creates the takeover file may remove a lock it did not write, so no
  one removes a lock that another process has just taken over.
  """
  guard = path + ".takeover"
  try:
    os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
  except FileExistsError:
    raise RunLockedError(
        f"Another run is taking over the stale lock {path} right now ({guard} exists). If no "
        f"other run is starting on this MODEL_DIR, delete {guard} and try again."
    ) from None
  try:
    if _read(path) != seen:
      return False
    os.unlink(path)
    logging.warning("Taking over the stale lock %s: %s.", path, reason)
    return _create(path, content)
  finally:
    os.unlink(guard)


class RunLock:
  """MODEL_DIR's lock, held for a `with` block by process 0 (`path` is None elsewhere)."""

  def __init__(self, path: Optional[str], stale_after_s: float):
    self.path = path
    self.stale_after_s = stale_after_s
    self._content = json.dumps(_this_run()).encode()
    self._next_beat = 0.0

  def __enter__(self) -> "RunLock":
    if self.path is None:
      return self
    for _ in range(_ATTEMPTS):
      if _create(self.path, self._content):
        break
      seen = _read(self.path)
      if seen is not None and _take_over(
          self.path, seen, self._content, _stale_reason(self.path, seen, self.stale_after_s)
      ):
        break
    else:
      raise RunLockedError(
          f"The lock {self.path} kept changing while this run tried to take it: other runs "
          "are starting on this MODEL_DIR. Start one run per MODEL_DIR."
      )
    self._next_beat = time.monotonic() + self.stale_after_s / _BEATS_PER_STALE
    return self

  def __exit__(self, *exc_info) -> None:
    """Removes the lock, unless it is no longer this run's."""
    if self.path is not None and self._ours(_read(self.path)):
      os.unlink(self.path)

  def _ours(self, seen: Optional[_Snapshot]) -> bool:
    return seen is not None and seen.content == self._content

  def heartbeat(self) -> None:
    """Marks the run alive (refreshes the lock's mtime) at most every stale_after_s / 10.

    Cheap enough for every step. Raises RunLockedError if the lock is no longer this run's
    (deleted, or taken over while this run went stale_after_s without a heartbeat), so that
    the run stops before writing checkpoints beside another one.
    """
    now = time.monotonic()
    if self.path is None or now < self._next_beat:
      return
    self._next_beat = now + self.stale_after_s / _BEATS_PER_STALE
    seen = _read(self.path)
    if not self._ours(seen):
      holder = _holder(seen.content) if seen else None
      now_names = f"now names process {holder['pid']} on host {holder['host']}" if holder else ""
      raise RunLockedError(
          f"This run's lock {self.path} {now_names or ('was replaced' if seen else 'was deleted')}"
          f" (a lock not refreshed for {self.stale_after_s:.0f} s is taken over as stale); "
          "stopping so that two runs do not write the same checkpoints. Make sure one run at "
          "most uses this MODEL_DIR, then rerun to resume from its last checkpoint."
      )
    os.utime(self.path)


@gin.configurable
def held(model_dir: str, *, stale_after_s: float = STALE_AFTER_S) -> RunLock:
  """MODEL_DIR's lock, for `with`. `stale_after_s` must outlast the longest stretch between
  heartbeats (a first compile, a long eval) or a run on another host may take the lock."""
  if type(stale_after_s) not in (int, float) or not stale_after_s > 0:  # bool, NaN: no
    raise ConfigError(
        f"held.stale_after_s={stale_after_s!r}: expected a number of seconds > 0, e.g. "
        f"{STALE_AFTER_S:.0f}."
    )
  path = os.path.join(model_dir, LOCK_NAME) if jax.process_index() == 0 else None
  return RunLock(path, float(stale_after_s))
