"""A preemption notice to one host of a 2-process run stops both at the same step, and resumes.

The real CLI (`python -m trainers.train`, the quickstart shrunk) runs as 2 local CPU processes
(jax.distributed + gloo, 1 device each) on one MODEL_DIR. Process 1 alone gets SIGTERM, as
one host of a pod gets the scheduler's notice. JAX's preemption sync manager (made by
jax.distributed.initialize) tells the coordination service, which picks the step at which
`multihost_utils.reached_preemption_sync_point` becomes True on every process: both save
that one step (with each process's input-pipeline state) and exit 143. Rerunning the same
command resumes from it without replaying the data and ends where an uninterrupted
2-process run ends.
"""

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.trainers.test_cli import assert_same_params, data_position, quick_flags
from tests.trainers.test_multihost import REPO_ROOT, _child_env, _free_port, _run_all, _tail

START_TIMEOUT_S = 240  # start-up, compiles and 2 steps of both processes, on 2 CPU cores
STOP_TIMEOUT_S = 120  # from the notice to both exits: finish a step, save, shut down
SIGTERM_EXIT = 128 + signal.SIGTERM


def _flags(model_dir: pathlib.Path, steps: int) -> list[str]:
  # No periodic checkpoint and no eval: the only step saved by the interrupted run is the
  # preemption's, and the runs compile nothing but init and the train step.
  return quick_flags(
      model_dir,
      steps,
      "--gin.CHECKPOINT_PERIOD=1000",
      "--gin.train.eval_dataset_cfg=None",
      "--gin.train.log_period=1",
  )


def _jobs(name: str, model_dir: pathlib.Path, steps: int) -> list[tuple[str, list[str], dict]]:
  """The two processes of one run on `model_dir`: (log name, argv, environment) each."""
  argv = [sys.executable, "-m", "trainers.train", *_flags(model_dir, steps)]
  port = _free_port()
  return [
      (
          f"{name}{i}",
          argv,
          _child_env(
              1,
              {
                  "PODZOO_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                  "PODZOO_NUM_PROCESSES": "2",
                  "PODZOO_PROCESS_ID": str(i),
              },
          ),
      )
      for i in range(2)
  ]


def _saved_state(model_dir: pathlib.Path, step: int) -> dict:
  """The saved state of `step` on this process's first device.

  test_cli.saved_state restores onto the shardings saved in the checkpoint, which name the
  2-process run's devices (process 1's is id 2048): Orbax refuses that topology here.
  """
  state_dir = str(model_dir / "checkpoints" / str(step) / "state")
  here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  saved = ocp.StandardCheckpointer().metadata(state_dir).item_metadata.tree
  target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=here),
      saved,
      is_leaf=lambda x: hasattr(x, "shape"),
  )
  return ocp.StandardCheckpointer().restore(state_dir, target)


def _assert_same_tree(a, b) -> None:
  flat_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
  flat_b, tree_b = jax.tree_util.tree_flatten_with_path(b)
  assert tree_a == tree_b
  for (path, x), (_, y) in zip(flat_a, flat_b):
    np.testing.assert_allclose(
        np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7, err_msg=jax.tree_util.keystr(path)
    )


def _logs(log_dir: pathlib.Path, names) -> str:
  return "\n".join(f"--- {n}\n{_tail(log_dir / f'{n}.log')}" for n in names)


def _preempt_process_1(log_dir: pathlib.Path, model_dir: pathlib.Path) -> dict[str, int]:
  """Runs a long job until both processes have stepped, SIGTERMs process 1 only, returns the
  exit codes by log name."""
  jobs = _jobs("preempted", model_dir, 1000)
  names = [name for name, _, _ in jobs]
  procs = {}
  try:
    for name, argv, env in jobs:
      with open(log_dir / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
        procs[name] = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    # Step 2 logged by process 0: both processes are in the step loop (step 2's gradients
    # needed process 1) and have passed the sync point check of step 1 at least.
    deadline = time.monotonic() + START_TIMEOUT_S
    while "step 2/1000" not in (log_dir / "preempted0.log").read_text(errors="replace"):
      exited = {n: p.poll() for n, p in procs.items() if p.poll() is not None}
      assert not exited, f"exited before step 2: {exited}\n{_logs(log_dir, names)}"
      if time.monotonic() > deadline:
        raise AssertionError(f"no step 2 in {START_TIMEOUT_S}s\n{_logs(log_dir, names)}")
      time.sleep(0.1)
    procs["preempted1"].send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(p.poll() is None for p in procs.values()):
      running = [n for n, p in procs.items() if p.poll() is None]
      assert time.monotonic() < deadline, (
          f"{running} still running {STOP_TIMEOUT_S}s after SIGTERM to process 1; killed.\n"
          + _logs(log_dir, names)
      )
      time.sleep(0.1)
    return {n: p.returncode for n, p in procs.items()}
  finally:
    for proc in procs.values():
      if proc.poll() is None:
        proc.kill()
      proc.wait()


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_one_step_and_resumes_exactly(tmp_path):
  preempted, straight = tmp_path / "preempted", tmp_path / "straight"

  codes = _preempt_process_1(tmp_path, preempted)
  logs = _logs(tmp_path, codes)
  assert codes == {"preempted0": SIGTERM_EXIT, "preempted1": SIGTERM_EXIT}, logs
  # Both saved one and the same step (one directory, with both processes' input state).
  steps = [p for p in os.listdir(preempted / "checkpoints") if p.isdigit()]
  assert len(steps) == 1, f"{steps}\n{logs}"
  k = int(steps[0])
  assert k > 2, logs
  log0 = (tmp_path / "preempted0.log").read_text(errors="replace")
  said = re.findall(r"Preempted \(SIGTERM\): saved checkpoint step (\d+)", log0)
  assert said == [str(k)], logs
  saved_by = {
      name.split(".")[0]
      for name in os.listdir(preempted / "checkpoints" / str(k) / "data_iterator")
  }
  assert {"process_0-of-2", "process_1-of-2"} <= saved_by, saved_by
  assert data_position(preempted, k) == {"train_batches": k}

  # The same command with TRAIN_STEPS=k+2 resumes; an uninterrupted run goes straight there.
  target = k + 2
  _run_all(_jobs("resumed", preempted, target) + _jobs("straight", straight, target), tmp_path)
  log0 = (tmp_path / "resumed0.log").read_text(errors="replace")
  assert f"Restored checkpoint at step {k}" in log0, _logs(tmp_path, ["resumed0"])
  # Process 0 restored its input pipeline's saved state, not replayed the data. (Only process
  # 0 prints; a replay by process 1 alone would go unseen here, and give the same batches.)
  assert "Replaying" not in log0, _logs(tmp_path, ["resumed0"])
  resumed_state, straight_state = _saved_state(preempted, target), _saved_state(straight, target)
  assert int(resumed_state["step"]) == int(straight_state["step"]) == target
  assert_same_params(resumed_state, straight_state)
  _assert_same_tree(resumed_state["opt_state"], straight_state["opt_state"])
  assert data_position(preempted, target) == data_position(straight, target)
  assert data_position(straight, target) == {"train_batches": target}
