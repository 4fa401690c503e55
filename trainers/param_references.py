"""Parameters a run keeps by reference to the checkpoint it started from, not as copies.

A parameter the run never trains and read from INITIAL_CHECKPOINT_PATH (SPAE's codebook: a
frozen LM's input-embedding table) is not saved in the run's checkpoints
(InitialCheckpoint.by_reference). Each step records instead where it lives, the source
step's state directory and the parameter's path there, with its shape, dtype and a SHA-256
fingerprint of its values; every restore reads it from there and checks the fingerprint. A
source that was moved or deleted, or that now holds other values (a step retrained under
the same number), is an error naming it, never a silently different parameter.
"""

import dataclasses
import hashlib
import os
from typing import Any, Iterable, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util
from jax.experimental import multihost_utils

from model_zoo.errors import UserError

ITEM = "references"  # the JSON item of a checkpoint step that lists them


class ReferencedCheckpointError(UserError, FileNotFoundError):
  """A parameter kept by reference cannot be read as it was saved: its source moved or changed."""


@dataclasses.dataclass(frozen=True)
class Reference:
  """Where one parameter kept by reference lives, and what it must read as."""

  state_dir: str  # the source checkpoint step's state directory
  source: str  # the parameter's '/'-joined path there
  shape: tuple[int, ...]
  dtype: str
  sha256: str

  def to_json(self) -> dict:
    return {**dataclasses.asdict(self), "shape": list(self.shape)}

  @classmethod
  def from_json(cls, record: Mapping[str, Any]) -> "Reference":
    return cls(**{**record, "shape": tuple(record["shape"])})

  def check(self, path: str, value: jax.Array) -> None:
    """Raises ReferencedCheckpointError unless `value` is what the run saved a reference to."""
    if fingerprint(value) != self.sha256:
      raise ReferencedCheckpointError(
          f"Parameter {path} is kept by reference to {self.source} in {self.state_dir}, which "
          "now holds other values than the run was trained with (its SHA-256 differs): that "
          "checkpoint was rewritten. Put the original back there, or start a new MODEL_DIR."
      )


def fingerprint(value: jax.Array) -> str:
  """SHA-256 of an array's dtype, shape and values (the whole array, gathered from every
  process)."""
  host = np.ascontiguousarray(multihost_utils.process_allgather(value, tiled=True))
  digest = hashlib.sha256(f"{host.dtype.str}{host.shape}".encode())
  digest.update(host.tobytes())
  return digest.hexdigest()


def reference_to(state_dir: str, source: str, value: jax.Array) -> Reference:
  return Reference(state_dir, source, tuple(value.shape), str(value.dtype), fingerprint(value))


def flat(params: Any) -> dict[str, Any]:
  """Leaves by '/'-joined path."""
  return {"/".join(k): v for k, v in traverse_util.flatten_dict(params).items()}


def unflat(leaves: Mapping[str, Any]) -> dict:
  return traverse_util.unflatten_dict({tuple(p.split("/")): v for p, v in leaves.items()})


def without(params: Any, paths: Iterable[str]) -> dict:
  """`params` less the leaves at `paths` (and the subtrees left empty); `params` itself when
  `paths` is empty."""
  paths = set(paths)
  if not paths:
    return params
  return unflat({p: v for p, v in flat(params).items() if p not in paths})


def with_values(params: Any, values: Mapping[str, Any]) -> dict:
  """`params` with the leaves at `values`' paths added; `params` itself when there are none."""
  if not values:
    return params
  return unflat({**flat(params), **values})


def saved(step_dir: str) -> dict[str, Reference]:
  """The references a checkpoint step records (none for a step without the item)."""
  directory = os.path.join(step_dir, ITEM)
  if not os.path.isdir(directory):
    return {}
  with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as checkpointer:
    records = checkpointer.restore(directory)
  return {path: Reference.from_json(record) for path, record in records.items()}


def to_json(references: Mapping[str, Reference]) -> dict:
  return {path: reference.to_json() for path, reference in references.items()}


def source_error(
    path: str, reference: Reference, error: BaseException
) -> ReferencedCheckpointError:
  missing = not os.path.isdir(reference.state_dir)
  why = "no longer exists" if missing else f"cannot be read ({type(error).__name__}: {error})"
  return ReferencedCheckpointError(
      f"Parameter {path} is kept by reference to {reference.source} in {reference.state_dir} "
      f"(the run's INITIAL_CHECKPOINT_PATH, not saved again in its checkpoints), which {why}. "
      "Put that checkpoint back, or a symbolic link at that path to where it moved."
  )
