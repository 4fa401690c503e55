"""Multi-host training: 2 local CPU processes (jax.distributed + gloo) must match 1 process.

The worker (tests/trainers/multihost_worker.py) runs the real Partitioner and Trainer on a
tiny model. Each of the 2 processes owns 1 CPU device and builds only its half of every
global batch; the reference is one process with 2 local CPU devices building all rows.
Same mesh shape, same global batches, so per-step losses and final parameters must agree.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import pytest

from trainers import distributed

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = 5
TIMEOUT_S = 240  # for all three processes together; a hung collective must not hang pytest
_PODZOO_ENV = ("PODZOO_COORDINATOR_ADDRESS", "PODZOO_NUM_PROCESSES", "PODZOO_PROCESS_ID")


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _child_env(num_local_devices: int, extra: dict[str, str]) -> dict[str, str]:
  """The parent's environment without anything that would leak into the children's JAX setup.

  `--xla_backend_optimization_level=0` only makes XLA's CPU compiles faster (the tiny model's
  init and train step take ~8 s each otherwise); every run gets the same flags, so the
  comparison between them is unaffected.
  """
  env = {
      k: v
      for k, v in os.environ.items()
      if k not in _PODZOO_ENV and k not in ("XLA_FLAGS", "JAX_PLATFORMS", "JAX_NUM_CPU_DEVICES")
  }
  env.update(
      {
          "XLA_FLAGS": f"--xla_force_host_platform_device_count={num_local_devices} "
          "--xla_backend_optimization_level=0",
          "JAX_PLATFORMS": "cpu",
          "TF_CPP_MIN_LOG_LEVEL": "2",
          "PYTHONUNBUFFERED": "1",
      }
  )
  env.update(extra)
  return env


def _tail(path: pathlib.Path, n: int = 40) -> str:
  lines = path.read_text(errors="replace").splitlines() if path.exists() else ["<no log>"]
  return "\n".join(lines[-n:])


def _run_all(jobs: list[tuple[str, list[str], dict[str, str]]], log_dir: pathlib.Path) -> None:
  """Starts every job at once, waits for all under one deadline; kills the rest on any failure."""
  procs = []
  try:
    for name, argv, env in jobs:
      log = open(log_dir / f"{name}.log", "wb")  # a file, not a pipe: a chatty child cannot block
      procs.append(
          (
              name,
              subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
              log,
          )
      )
    deadline = time.monotonic() + TIMEOUT_S
    pending = list(procs)
    while pending:
      for item in list(pending):
        name, proc, _ = item
        rc = proc.poll()
        if rc is None:
          continue
        pending.remove(item)
        if rc != 0:
          raise AssertionError(f"worker {name} exited with {rc}:\n{_tail(log_dir / f'{name}.log')}")
      if pending and time.monotonic() > deadline:
        names = [name for name, _, _ in pending]
        logs = "\n".join(f"--- {n}\n{_tail(log_dir / f'{n}.log')}" for n in names)
        raise AssertionError(f"workers {names} still running after {TIMEOUT_S}s; killed.\n{logs}")
      time.sleep(0.1)
  finally:
    for _, proc, log in procs:
      if proc.poll() is None:
        proc.kill()
      proc.wait()
      log.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Runs the 2-process job and the 1-process reference (concurrently) once for this module."""
  root = tmp_path_factory.mktemp("multihost")
  worker = [sys.executable, "-m", "tests.trainers.multihost_worker", "--steps", str(STEPS)]
  port = _free_port()
  multi_dir = root / "multi_model_dir"  # shared by both processes, as on a pod's shared storage
  jobs = [
      # Both processes are configured through the PODZOO_* environment (flags: unit tests below) ...
      (
          "process0",
          worker + ["--out", str(root / "multi_0.json"), "--model_dir", str(multi_dir)],
          _child_env(
              1,
              {
                  "PODZOO_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                  "PODZOO_NUM_PROCESSES": "2",
                  "PODZOO_PROCESS_ID": "0",
              },
          ),
      ),
      (
          "process1",
          worker + ["--out", str(root / "multi_1.json"), "--model_dir", str(multi_dir)],
          _child_env(
              1,
              {
                  "PODZOO_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                  "PODZOO_NUM_PROCESSES": "2",
                  "PODZOO_PROCESS_ID": "1",
              },
          ),
      ),
      # ... and the reference is a plain single process with 2 local devices.
      (
          "single",
          worker
          + ["--out", str(root / "single.json"), "--model_dir", str(root / "single_model_dir")],
          _child_env(2, {}),
      ),
  ]
  _run_all(jobs, root)
  return root


def _load(path: pathlib.Path) -> dict:
  assert path.exists(), f"{path} was not written"
  return json.loads(path.read_text())


@pytest.mark.slow
def test_two_processes_match_one_process(runs):
  multi, single = _load(runs / "multi_0.json"), _load(runs / "single.json")
  assert multi["num_processes"] == 2 and multi["num_devices"] == 2
  assert single["num_processes"] == 1 and single["num_devices"] == 2
  # Each process built only its half of every global batch of 8 rows.
  assert multi["local_rows_per_step"] == [4] * STEPS
  assert single["local_rows_per_step"] == [8] * STEPS
  assert multi["step"] == single["step"] == STEPS
  assert len(multi["losses"]) == len(single["losses"]) == STEPS
  assert multi["losses"] == pytest.approx(single["losses"], rel=1e-5)
  assert multi["param_checksum"] == pytest.approx(single["param_checksum"], rel=1e-5)
  assert single["losses"][-1] < single["losses"][0], single["losses"]


@pytest.mark.slow
def test_only_process_zero_writes(runs):
  # The result file: process 1 was given its own --out path and must not have written it.
  assert (runs / "multi_0.json").exists()
  assert not (runs / "multi_1.json").exists()
  # Metrics: both processes made a MetricsWriter on the same model_dir; one JSONL, N lines.
  model_dir = runs / "multi_model_dir"
  jsonl = sorted(p.name for p in model_dir.rglob("*.jsonl"))
  assert jsonl == ["train_metrics.jsonl"], jsonl
  records = [
      json.loads(line) for line in (model_dir / "train_metrics.jsonl").read_text().splitlines()
  ]
  assert [r["step"] for r in records] == list(range(1, STEPS + 1))
  multi = _load(runs / "multi_0.json")
  assert [r["loss"] for r in records] == pytest.approx(multi["losses"], rel=1e-6)
  # One TensorBoard event file, from process 0 only.
  events = list((model_dir / "train").glob("events.*"))
  assert len(events) == 1, events


def test_initialize_is_a_noop_without_config(monkeypatch):
  for name in _PODZOO_ENV:
    monkeypatch.delenv(name, raising=False)

  def must_not_be_called(*args, **kwargs):
    raise AssertionError(f"jax.distributed.initialize called with {args} {kwargs}")

  monkeypatch.setattr(jax.distributed, "initialize", must_not_be_called)
  distributed.initialize()
  distributed.initialize(multihost=False)
  assert jax.process_count() == 1


def _record_initialize(monkeypatch) -> list[dict]:
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: calls.append(kwargs))
  # Keep the pytest process's own JAX config untouched.
  monkeypatch.setattr(jax.config, "update", lambda *args: calls.append({"config": args}))
  return calls


def test_initialize_reads_the_environment(monkeypatch):
  calls = _record_initialize(monkeypatch)
  monkeypatch.setenv("PODZOO_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  monkeypatch.setenv("PODZOO_NUM_PROCESSES", "4")
  monkeypatch.setenv("PODZOO_PROCESS_ID", "3")
  distributed.initialize()
  assert {"config": ("jax_cpu_collectives_implementation", "gloo")} in calls
  assert calls[-1] == {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}


def test_initialize_flags_override_the_environment(monkeypatch):
  calls = _record_initialize(monkeypatch)
  monkeypatch.setenv("PODZOO_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  monkeypatch.setenv("PODZOO_NUM_PROCESSES", "4")
  monkeypatch.setenv("PODZOO_PROCESS_ID", "3")
  distributed.initialize(coordinator_address="10.0.0.2:99", num_processes=2, process_id=0)
  assert calls[-1] == {"coordinator_address": "10.0.0.2:99", "num_processes": 2, "process_id": 0}


def test_multihost_flag_lets_jax_discover_the_cluster(monkeypatch):
  """--multihost alone (TPU pods, SLURM): initialize with nothing given, JAX auto-detects."""
  calls = _record_initialize(monkeypatch)
  for name in _PODZOO_ENV:
    monkeypatch.delenv(name, raising=False)
  distributed.initialize(multihost=True)
  assert calls[-1] == {"coordinator_address": None, "num_processes": None, "process_id": None}
