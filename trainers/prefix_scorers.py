"""Trained prefix scorers for the controlled decoders, restored from their runs' checkpoints.

A run config binds one per scorer, e.g. for token-wise controlled decoding in trainers.infer:

  infer.decoder = @TokenwiseCD()
  TokenwiseCD.scorers = [@length/restored_prefix_scorer()]
  length/restored_prefix_scorer.model = @length/PrefixScorerModel()
  length/restored_prefix_scorer.model_dir = "/runs/length_scorer"
  length/restored_prefix_scorer.weight = 2.0

Each scorer's parameters are restored on the run's mesh with its own logical axis rules, so
they are sharded like any model's; inference passes them to the compiled step as arguments.
"""

from typing import Optional

import gin
import jax

from model_zoo.decoding import controlled
from trainers import cli, partitioning, restore
from trainers.trainer import Trainer

_SHAPE_LENGTH = 8  # parameter shapes do not depend on the sequence length


@gin.configurable
def restored_prefix_scorer(
    model=gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    weight: float = 1.0,
    checkpoint_step: Optional[int] = None,
) -> controlled.PrefixScorer:
  """The prefix scorer trained in `model_dir` (its newest checkpoint, or `checkpoint_step`),
  weighted by lambda = `weight`. `model` is the PrefixScorerModel that run trained."""
  partitioner = partitioning.Partitioner()
  rows = partitioner.data_parallel_size
  shapes = {k: v.shape for k, v in model.prompt_batch([], rows, _SHAPE_LENGTH).items()}
  state = restore.restore_state(
      Trainer(model=model, partitioner=partitioner), model_dir, shapes, checkpoint_step
  )
  step = int(jax.device_get(state.step))
  cli.say(f"Restored prefix scorer step {step} of {model_dir} (lambda {weight}).")
  return controlled.PrefixScorer(model=model, params=state.params, weight=weight)
