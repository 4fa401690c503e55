"""MODEL_DIR/.lock: one live run per MODEL_DIR; stale locks (dead pid, silent other host,
damaged file) are taken over with a warning, and racing takers never both win."""

import json
import logging
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time

import gin
import jax
import pytest

from model_zoo.errors import ConfigError, UserError
from trainers import run_lock

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
# Another run, holding the lock until it is killed. Its JAX is a stub (process 0 of 1):
# the real one would take seconds to import and plays no part in the lock.
HOLDER = """
import sys, time, types
sys.modules["jax"] = types.SimpleNamespace(process_index=lambda: 0)
from trainers import run_lock
with run_lock.held(sys.argv[1]):
  print("held", flush=True)
  time.sleep(60)
"""


def _lock_path(model_dir) -> pathlib.Path:
  return pathlib.Path(model_dir) / ".lock"


def _write_lock(model_dir, age_s: float = 0.0, **holder) -> pathlib.Path:
  """A lock as another run would have left it, last refreshed `age_s` ago."""
  path = _lock_path(model_dir)
  path.write_text(json.dumps({"started": "2024-01-02T03:04:05+00:00", **holder}))
  os.utime(path, (time.time() - age_s,) * 2)
  return path


def _dead_pid() -> int:
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def test_lock_is_taken_and_removed_after_the_block(tmp_path):
  with run_lock.held(str(tmp_path)) as lock:
    holder = json.loads(_lock_path(tmp_path).read_text())
    assert lock.path == str(_lock_path(tmp_path))
  assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
  assert holder["started"].endswith("+00:00") and holder["command"]
  assert not _lock_path(tmp_path).exists()


def test_lock_is_removed_after_an_exception(tmp_path):
  with pytest.raises(KeyError):
    with run_lock.held(str(tmp_path)):
      assert _lock_path(tmp_path).exists()
      raise KeyError("boom")
  assert not _lock_path(tmp_path).exists()


def test_second_lock_while_held_is_refused_naming_holder_and_fix(tmp_path):
  with run_lock.held(str(tmp_path)):
    with pytest.raises(run_lock.RunLockedError) as e:
      with run_lock.held(str(tmp_path)):
        pass
    assert _lock_path(tmp_path).exists()  # the refused run left the holder's lock alone
  message = str(e.value)
  assert isinstance(e.value, UserError) and "\n" not in message
  for part in (
      f"process {os.getpid()} on host {socket.gethostname()}",
      "started 20",
      str(_lock_path(tmp_path)),
      "Stop that run, or use another MODEL_DIR; if that run is gone, delete",
  ):
    assert part in message


def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path, caplog):
  pid = _dead_pid()
  _write_lock(tmp_path, host=socket.gethostname(), pid=pid)
  with caplog.at_level(logging.WARNING), run_lock.held(str(tmp_path)):
    assert json.loads(_lock_path(tmp_path).read_text())["pid"] == os.getpid()
  assert f"stale lock {_lock_path(tmp_path)}: process {pid}" in caplog.text
  assert "no longer runs" in caplog.text


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_recycled_pid_is_told_apart_by_its_start_time(tmp_path, caplog):
  # Our own (live) pid, but recorded with another start time: a pid given to a new process.
  ticks = run_lock._proc_stat(os.getpid())[1]
  _write_lock(tmp_path, host=socket.gethostname(), pid=os.getpid(), start_ticks=ticks - 1)
  with caplog.at_level(logging.WARNING), run_lock.held(str(tmp_path)):
    pass
  assert "no longer runs" in caplog.text


def test_lock_from_another_host_refreshed_recently_is_refused(tmp_path):
  path = _write_lock(tmp_path, age_s=30, host="elsewhere", pid=1234)
  with pytest.raises(run_lock.RunLockedError) as e:
    run_lock.held(str(tmp_path)).__enter__()
  message = str(e.value)
  assert "run on another host (process 1234 on host elsewhere, started 2024-01-02" in message
  assert "refreshed" in message and "30 s ago" in message and f"delete {path}." in message
  assert json.loads(path.read_text())["host"] == "elsewhere"


def test_lock_from_another_host_not_refreshed_is_taken_over(tmp_path, caplog):
  _write_lock(tmp_path, age_s=700, host="elsewhere", pid=1234)
  with caplog.at_level(logging.WARNING), run_lock.held(str(tmp_path)):
    assert json.loads(_lock_path(tmp_path).read_text())["host"] == socket.gethostname()
  assert "process 1234 on host elsewhere" in caplog.text
  assert "has not refreshed it for 700 s" in caplog.text


def test_stale_threshold_is_a_gin_setting(tmp_path):
  _write_lock(tmp_path, age_s=30, host="elsewhere", pid=1234)
  gin.bind_parameter("held.stale_after_s", 20)
  with run_lock.held(str(tmp_path)):
    assert json.loads(_lock_path(tmp_path).read_text())["host"] == socket.gethostname()
  for bad in (0, -1.0, float("nan"), True, "600"):
    with pytest.raises(ConfigError, match="held.stale_after_s"):
      run_lock.held(str(tmp_path), stale_after_s=bad)


@pytest.mark.parametrize("content", ["", '{"host": "h", "pi', "[]", '{"host": "h", "pid": 0}'])
def test_damaged_lock_is_refused_while_fresh_and_taken_over_once_old(tmp_path, caplog, content):
  path = _lock_path(tmp_path)
  path.write_text(content)
  with pytest.raises(run_lock.RunLockedError, match=f"The lock {path} is empty or unreadable"):
    run_lock.held(str(tmp_path)).__enter__()
  assert path.read_text() == content
  os.utime(path, (time.time() - 700,) * 2)
  with caplog.at_level(logging.WARNING), run_lock.held(str(tmp_path)):
    assert json.loads(path.read_text())["pid"] == os.getpid()
  assert "it is empty or unreadable and 700 s old" in caplog.text


def test_heartbeat_refreshes_the_mtime_at_most_every_tenth_of_the_threshold(tmp_path):
  path = _lock_path(tmp_path)
  with run_lock.held(str(tmp_path), stale_after_s=2.0) as lock:  # a heartbeat per 0.2 s
    os.utime(path, (0, 0))
    lock.heartbeat()  # just taken: too soon
    assert path.stat().st_mtime == 0
    time.sleep(0.25)
    lock.heartbeat()
    assert abs(path.stat().st_mtime - time.time()) < 5
    os.utime(path, (0, 0))
    lock.heartbeat()  # just refreshed: too soon
    assert path.stat().st_mtime == 0


@pytest.mark.parametrize("taken", [True, False])
def test_heartbeat_stops_a_run_whose_lock_was_taken_or_deleted(tmp_path, taken):
  path = _lock_path(tmp_path)
  with pytest.raises(run_lock.RunLockedError) as e:
    with run_lock.held(str(tmp_path), stale_after_s=0.5) as lock:
      path.unlink()
      if taken:
        _write_lock(tmp_path, host="elsewhere", pid=1234)
      time.sleep(0.06)
      lock.heartbeat()
  expected = "now names process 1234 on host elsewhere" if taken else "was deleted"
  assert f"This run's lock {path} {expected}" in str(e.value)
  assert "two runs do not write the same checkpoints" in str(e.value)
  assert path.exists() == taken  # the new holder's lock is left to it


def test_processes_other_than_0_hold_nothing(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  _write_lock(tmp_path, host=socket.gethostname(), pid=os.getpid())  # live: 0 would refuse
  with run_lock.held(str(tmp_path), stale_after_s=0.01) as lock:
    time.sleep(0.01)
    lock.heartbeat()
  assert json.loads(_lock_path(tmp_path).read_text())["pid"] == os.getpid()
  assert os.listdir(tmp_path) == [".lock"]


def test_a_model_dir_that_cannot_hold_the_lock_is_a_user_error(tmp_path):
  with pytest.raises(ConfigError, match="Cannot create the lock .*writable directory"):
    run_lock.held(str(tmp_path / "missing")).__enter__()


def test_a_lock_taken_over_meanwhile_is_not_removed_by_a_late_taker(tmp_path):
  # B judged the stale lock, then A took it over before B acted on that judgement.
  _write_lock(tmp_path, age_s=700, host="elsewhere", pid=1234)
  path = str(_lock_path(tmp_path))
  seen_by_b = run_lock._read(path)
  with run_lock.held(str(tmp_path)) as a:
    assert not run_lock._take_over(path, seen_by_b, b"B", "stale")
    assert a._ours(run_lock._read(path))


def test_takeover_in_progress_elsewhere_is_refused(tmp_path):
  _write_lock(tmp_path, age_s=700, host="elsewhere", pid=1234)
  guard = tmp_path / ".lock.takeover"
  guard.touch()
  with pytest.raises(run_lock.RunLockedError, match=f"right now \\({guard} exists\\)"):
    run_lock.held(str(tmp_path)).__enter__()
  assert json.loads(_lock_path(tmp_path).read_text())["host"] == "elsewhere"


def test_a_lock_that_keeps_changing_is_given_up_on(tmp_path, monkeypatch):
  _write_lock(tmp_path, host="elsewhere", pid=1234)
  monkeypatch.setattr(run_lock, "_read", lambda path: None)  # gone each time it is read
  with pytest.raises(run_lock.RunLockedError, match="kept changing"):
    run_lock.held(str(tmp_path)).__enter__()


def _race(model_dir, threads: int) -> list:
  """Each thread's outcome of taking the lock at once: its RunLock, or the exception."""
  start, outcomes = threading.Barrier(threads), []

  def contend():
    lock = run_lock.held(str(model_dir))
    start.wait()
    try:
      outcomes.append(lock.__enter__())
    except Exception as e:  # pylint: disable=broad-except  (a crash is a failed race too)
      outcomes.append(e)

  racers = [threading.Thread(target=contend) for _ in range(threads)]
  for t in racers:
    t.start()
  for t in racers:
    t.join()
  return outcomes


def _one_winner(outcomes: list, threads: int) -> run_lock.RunLock:
  winners = [o for o in outcomes if isinstance(o, run_lock.RunLock)]
  assert len(outcomes) == threads and len(winners) == 1, outcomes
  assert all(isinstance(o, run_lock.RunLockedError) for o in outcomes if o is not winners[0])
  assert winners[0]._ours(run_lock._read(winners[0].path))
  return winners[0]


def test_threads_racing_for_a_stale_lock_have_exactly_one_winner(tmp_path):
  for _ in range(25):
    _write_lock(tmp_path, age_s=700, host="elsewhere", pid=1234)
    _one_winner(_race(tmp_path, 8), 8).__exit__(None, None, None)
    assert os.listdir(tmp_path) == []  # lock released, no takeover file left


def test_two_takers_that_both_saw_the_lock_unchanged_do_not_both_win(tmp_path, monkeypatch):
  # The worst interleaving, forced: each taker that reads the lock again before removing it
  # waits there until the other one has read it too (or gives up waiting after 0.3 s).
  _write_lock(tmp_path, age_s=700, host="elsewhere", pid=1234)
  read, both_read = run_lock._read, threading.Barrier(2, timeout=0.3)

  def read_then_wait_for_the_other_taker(path):
    seen = read(path)
    if sys._getframe(1).f_code.co_name == "_take_over":  # pylint: disable=protected-access
      try:
        both_read.wait()
      except threading.BrokenBarrierError:
        pass
    return seen

  monkeypatch.setattr(run_lock, "_read", read_then_wait_for_the_other_taker)
  _one_winner(_race(tmp_path, 2), 2).__exit__(None, None, None)
  assert os.listdir(tmp_path) == []


def test_a_live_process_blocks_the_lock_and_its_sigkilled_lock_is_taken_over(tmp_path, caplog):
  holder = subprocess.Popen(
      [sys.executable, "-c", HOLDER, str(tmp_path)],
      cwd=REPO_ROOT,
      stdout=subprocess.PIPE,
      text=True,
  )
  try:
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(run_lock.RunLockedError, match=f"live run \\(process {holder.pid} on"):
      run_lock.held(str(tmp_path)).__enter__()
  finally:
    holder.kill()
    holder.wait()
  assert json.loads(_lock_path(tmp_path).read_text())["pid"] == holder.pid  # left by SIGKILL
  with caplog.at_level(logging.WARNING), run_lock.held(str(tmp_path)):
    assert json.loads(_lock_path(tmp_path).read_text())["pid"] == os.getpid()
  assert f"process {holder.pid} on host {socket.gethostname()}" in caplog.text


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_lock_of_a_zombie_process_is_taken_over(tmp_path):
  zombie = subprocess.Popen([sys.executable, "-c", "pass"])
  try:
    while run_lock._proc_stat(zombie.pid)[0] != "Z":  # exited, not yet reaped
      time.sleep(0.01)
    _write_lock(tmp_path, host=socket.gethostname(), pid=zombie.pid)
    with run_lock.held(str(tmp_path)):
      assert json.loads(_lock_path(tmp_path).read_text())["pid"] == os.getpid()
  finally:
    zombie.wait()
