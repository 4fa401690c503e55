"""Which data a run reads: a gin-configurable, TensorFlow-free view of a SeqIO task or mixture.

Kept apart from `trainers.data` (which imports SeqIO) so run configs can bind it, and the
core can name it, without TensorFlow.
"""

import dataclasses
from typing import Mapping, Optional

import gin


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """Which task, split, lengths and batch size; `module` imports a user's task definitions."""

  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]
  split: str = "train"
  batch_size: int = 8  # global, over all processes
  shuffle: bool = True
  seed: Optional[int] = 0
  pack: bool = True
  num_epochs: Optional[int] = None  # None repeats forever (training); 1 for evaluation
  module: Optional[str] = None
  # Where `python -m trainers.cache_tasks` (run with the same flags) wrote the tasks: their
  # preprocessing up to the CacheDatasetPlaceholder is read from there. None: on the fly.
  cache_dir: Optional[str] = None
