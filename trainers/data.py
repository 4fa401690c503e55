"""Where the trainer gets numpy batches: a gin-configurable view of a SeqIO task or mixture.

The core stays free of TensorFlow: `tasks.pipeline` (SeqIO, tf.data) is imported only
when a dataset is actually built.
"""

import dataclasses
import itertools
from typing import Iterator, Mapping, Optional

import gin
import jax
import numpy as np


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


def batch_iterator(
    cfg: DatasetConfig, feature_converter: str, start_batch: int = 0
) -> Iterator[dict[str, np.ndarray]]:
  """This process's rows of each global batch, from batch number `start_batch` on."""
  from tasks import pipeline  # pylint: disable=g-import-not-at-top  (TensorFlow, on demand)

  return pipeline.get_batch_iterator(
      cfg.mixture_or_task_name,
      cfg.task_feature_lengths,
      cfg.split,
      cfg.batch_size,
      feature_converter=feature_converter,
      pack=cfg.pack,
      shuffle=cfg.shuffle,
      seed=cfg.seed,
      num_epochs=cfg.num_epochs,
      shard_index=jax.process_index(),
      num_shards=jax.process_count(),
      start_batch=start_batch,
      module=cfg.module,
  )


def global_batch_shapes(cfg: DatasetConfig, feature_converter: str) -> dict[str, tuple[int, ...]]:
  """Shapes of one global batch (what the model is initialised and compiled for)."""
  first = next(batch_iterator(cfg, feature_converter))
  return {k: (cfg.batch_size,) + v.shape[1:] for k, v in first.items()}


def take(batches: Iterator[dict], max_batches: Optional[int]) -> Iterator[dict]:
  """At most `max_batches` batches (all of them when None)."""
  return batches if max_batches is None else itertools.islice(batches, max_batches)


def vocabulary(cfg: DatasetConfig, feature: str = "targets"):
  """The task's seqio vocabulary of `feature` (for decoding predictions to text)."""
  from tasks import pipeline  # pylint: disable=g-import-not-at-top

  task = pipeline.get_task_or_mixture(cfg.mixture_or_task_name, module=cfg.module)
  return task.output_features[feature].vocabulary


def check_vocab_fits(cfg: DatasetConfig, model_vocab_size: int) -> None:
  from tasks import pipeline  # pylint: disable=g-import-not-at-top

  size = pipeline.vocab_size(cfg.mixture_or_task_name, module=cfg.module)
  if size > model_vocab_size:
    raise ValueError(
        f"The vocabulary of {cfg.mixture_or_task_name!r} has {size} ids but the model's embedding "
        f"has {model_vocab_size} rows; set --gin.TransformerConfig.vocab_size={size} (or larger)."
    )
