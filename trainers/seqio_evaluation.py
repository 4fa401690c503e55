"""SeqIO evaluation of a model: its predictions and scores judged by the task's metric functions.

The core stays TensorFlow-free: `tasks.evaluation` (seqio.Evaluator) is imported only here,
on demand. Each process feeds its rows of every global batch and gets every row's outputs
back, so all processes compute the same metrics.
"""

from typing import Callable, Optional

import jax

from trainers import data, partitioning


def evaluate(
    model,
    params,
    partitioner: partitioning.Partitioner,
    cfg: data.DatasetConfig,
    decoder: Optional[Callable] = None,
) -> dict[str, dict[str, float]]:
  """task name -> metric name -> value over the split of `cfg` (decoded with `decoder`)."""
  from tasks import evaluation  # pylint: disable=g-import-not-at-top  (TensorFlow, on demand)

  predict = jax.jit(lambda p, b: model.predict_batch(p, b, decoder=decoder)[0])
  score = jax.jit(model.score_batch)
  return evaluation.evaluate_task(
      cfg.mixture_or_task_name,
      cfg.task_feature_lengths,
      cfg.split,
      cfg.batch_size,
      feature_converter=model.FEATURE_CONVERTER,
      predict_fn=lambda batch: partitioner.apply_gathered(predict, params, batch),
      score_fn=lambda batch: partitioner.apply_gathered(score, params, batch),
      module=cfg.module,
      shard_index=jax.process_index(),
      num_shards=jax.process_count(),
  )


def flatten(results: dict[str, dict[str, float]]) -> dict[str, float]:
  """{"task/metric": value} for metric writers."""
  return {
      f"{task}/{metric}": value
      for task, metrics in results.items()
      for metric, value in metrics.items()
  }


def report(results: dict[str, dict[str, float]]) -> str:
  from tasks import evaluation  # pylint: disable=g-import-not-at-top

  return evaluation.format_table(results)
