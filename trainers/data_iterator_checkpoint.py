"""Each process's input-pipeline position as an Orbax checkpoint item ("data_iterator").

A resumed run must read the batches an uninterrupted one would. Replaying the data
(`skip(n)`) costs time in proportion to the step; saving the iterator's own state, as T5X
does, costs the same at step 10 as at step 100,000. Each process writes its own iterator's
state as `process_<i>-of-<n>` in the item's directory; the iterator itself
(`tasks.pipeline.SavableBatchIterator`) knows how to write and read it, so this module
needs no TensorFlow.
"""

import dataclasses
from typing import Protocol

import jax
from etils import epath
import orbax.checkpoint as ocp

ITEM = "data_iterator"


class SavableIterator(Protocol):
  """An iterator whose position can be written to and read from files beginning with `path`."""

  def save(self, path: str) -> None:
    ...

  def restore(self, path: str) -> None:
    ...


class PositionMismatch(Exception):
  """The saved positions were written by another number of processes."""


def _own_name() -> str:
  return f"process_{jax.process_index()}-of-{jax.process_count()}"


class DataIteratorHandler(ocp.CheckpointHandler):
  """Saves and restores this process's iterator; every process calls it with its own."""

  def save(self, directory: epath.Path, args: "DataIteratorSave") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    args.iterator.save(str(directory / _own_name()))

  def restore(self, directory: epath.Path, args: "DataIteratorRestore") -> SavableIterator:
    name = _own_name()
    saved = {p.name.split(".")[0] for p in directory.iterdir() if p.name.startswith("process_")}
    if name not in saved:
      raise PositionMismatch(f"saved by {', '.join(sorted(saved)) or 'no process'}, not {name}")
    args.iterator.restore(str(directory / name))
    return args.iterator


@ocp.args.register_with_handler(DataIteratorHandler, for_save=True)
@dataclasses.dataclass
class DataIteratorSave(ocp.args.CheckpointArgs):
  iterator: SavableIterator


@ocp.args.register_with_handler(DataIteratorHandler, for_restore=True)
@dataclasses.dataclass
class DataIteratorRestore(ocp.args.CheckpointArgs):
  iterator: SavableIterator
