"""Restoring a finished run's parameters for evaluation and inference (nothing is initialised,
and no optimizer state is read)."""

import os
from typing import Any, Mapping, Optional

import jax
import optax

from model_zoo.errors import MissingFileError
from trainers import checkpoints, optimizers, partitioning, train_state
from trainers.trainer import Trainer

_SHAPE_LENGTH = 8  # parameter shapes do not depend on the sequence length


def restore_state(
    trainer: Trainer,
    model_dir: str,
    batch_shapes: Mapping[str, tuple[int, ...]],
    step: Optional[int] = None,
) -> train_state.TrainState:
  """Step and parameters of checkpoint `step` of MODEL_DIR (default: the newest readable one)
  on the trainer's mesh; the state's opt_state and rng are None.

  Fails with a message naming MODEL_DIR when it holds no checkpoint, and creates no
  directory on the way, so a mistyped MODEL_DIR leaves nothing behind.
  """
  directory = os.path.abspath(os.path.join(model_dir, "checkpoints"))
  if not os.path.isdir(directory):
    raise _no_checkpoint(directory)
  checkpointer = checkpoints.Checkpointer(directory)
  try:
    steps = sorted(checkpointer.manager.all_steps())
    if not steps:
      raise _no_checkpoint(directory)
    if step is not None and step not in steps:
      raise MissingFileError(
          f"No checkpoint at step {step} in {directory}; it holds steps {steps}. "
          "Pick one of them, or None for the newest."
      )
    abstract, _ = trainer.abstract_state(batch_shapes)
    state, _ = checkpointer.restore_latest(abstract, step, params_only=True)
  finally:
    checkpointer.close()
  return state


def restore_params(
    model,
    model_dir: str,
    step: Optional[int] = None,
    row_shapes: Optional[Mapping[str, tuple[int, ...]]] = None,
) -> tuple[int, Any]:
  """(step, parameters) of another run's checkpoint (a prefix scorer, a language model to fuse)
  on this run's mesh, sharded by its own logical axis rules. `row_shapes`: one batch row's
  feature shapes, for a model without text prompts (a SPAE model's image)."""
  partitioner = partitioning.Partitioner()
  rows = partitioner.data_parallel_size
  if row_shapes is None:
    shapes = {k: v.shape for k, v in model.prompt_batch([], rows, _SHAPE_LENGTH).items()}
  else:
    shapes = {k: (rows, *shape) for k, shape in row_shapes.items()}
  # Only the parameters are read: this run's optimizer (gin's, made for another model, e.g.
  # one that freezes parameters this model lacks) has no part in it.
  trainer = Trainer(model, partitioner, optax.set_to_zero(), optimizers.constant_schedule(1.0))
  state = restore_state(trainer, model_dir, shapes, step)
  return int(jax.device_get(state.step)), state.params


def _no_checkpoint(directory: str) -> MissingFileError:
  return MissingFileError(
      f"No checkpoint in {directory}; train first or set --gin.MODEL_DIR to a "
      "directory holding one."
  )
