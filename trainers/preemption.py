"""Preemption: on SIGTERM a run finishes its step, saves a checkpoint and exits.

TPU VM / GCE preemption and SLURM send SIGTERM some time before the kill. A single-process
run catches it here; a multi-host run uses JAX's preemption sync point, which the
coordination service triggers on the same signal and which makes every process stop at
the same step (so all of them write the same checkpoint). A second signal while the
checkpoint is being written changes nothing: Orbax writes a step into a temporary
directory and renames it when complete, so a kill meanwhile leaves no step that would be
taken as the latest.
"""

import signal
import types
from typing import Optional

import jax
from jax.experimental import multihost_utils

EXIT_CODE = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class Preempted(Exception):
  """The run stopped for a preemption notice after saving `step`; the CLI exits EXIT_CODE."""

  def __init__(self, step: int, directory: str):
    super().__init__(
        f"Preempted (SIGTERM): saved checkpoint step {step} in {directory} with the data "
        "position; run the same command again to resume from it."
    )
    self.step = step


class Watch:
  """Says when to stop for a preemption; a context manager that owns the SIGTERM handler."""

  def __init__(self):
    self._requested = False
    self._previous = None
    self._single_process = jax.process_count() == 1

  def __enter__(self) -> "Watch":
    if self._single_process:  # multi-host: the coordination service has the signal
      self._previous = signal.signal(signal.SIGTERM, self._on_signal)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def _on_signal(self, signum: int, frame: Optional[types.FrameType]) -> None:
    del signum, frame
    self._requested = True  # a second signal during the save just sets it again

  def should_stop(self, step: int) -> bool:
    """Whether to save and stop after `step`; call after every step on every process."""
    if self._single_process:
      return self._requested
    return multihost_utils.reached_preemption_sync_point(step)
