"""What the controlled decoders (model_zoo/decoding/controlled.py) need from a run: trained
prefix scorers restored from their runs' checkpoints, and rewards of the task's text.

A run config binds one scorer per objective, e.g. for token-wise controlled decoding in
trainers.infer:

  infer.decoder = @TokenwiseCD()
  TokenwiseCD.scorers = [@length/restored_prefix_scorer()]
  length/restored_prefix_scorer.model = @length/PrefixScorerModel()
  length/restored_prefix_scorer.model_dir = "/runs/length_scorer"
  length/restored_prefix_scorer.weight = 2.0

Each scorer's parameters are restored on the run's mesh with its own logical axis rules, so
they are sharded like any model's; inference passes them to the compiled step as arguments.
Best-of-K ranks its samples by a registered reward (tasks.controlled.rewards) of their text:

  infer.decoder = @BestOfK()
  BestOfK.reward = @task_reward()
  task_reward.name = "langid:de"
"""

from typing import Optional

import gin

from model_zoo.decoding import controlled
from trainers import cli, restore
from trainers.dataset_config import DatasetConfig


@gin.configurable
def restored_prefix_scorer(
    model=gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    weight: float = 1.0,
    checkpoint_step: Optional[int] = None,
) -> controlled.PrefixScorer:
  """The prefix scorer trained in `model_dir` (its newest checkpoint, or `checkpoint_step`),
  weighted by lambda = `weight`. `model` is the PrefixScorerModel that run trained."""
  step, params = restore.restore_params(model, model_dir, checkpoint_step)
  cli.say(f"Restored prefix scorer step {step} of {model_dir} (lambda {weight}).")
  return controlled.PrefixScorer(model=model, params=params, weight=weight)


@gin.configurable
def task_reward(
    name: str = gin.REQUIRED,
    dataset_cfg: DatasetConfig = gin.REQUIRED,
    eos_id: int = 1,
) -> controlled.SequenceReward:
  """The registered reward `name` of generated ids, decoded to text with the targets
  vocabulary of `dataset_cfg`'s task (whose module may register rewards of its own); a host
  callback that a compiled decoder can call."""
  from trainers import data  # pylint: disable=g-import-not-at-top  (SeqIO: when a run starts)

  return data.sequence_reward(name, dataset_cfg, eos_id)
