"""Runs a task's own `metric_fns` on a model through `seqio.Evaluator`.

seqio hands a model function the whole eval split as an enumerated `tf.data.Dataset` and
wants `(index, output)` pairs back; trainers have numpy functions of one batch. This module
turns one into the other, so TensorFlow stays in `tasks/` (trainers import it lazily).
"""

from typing import Callable, Iterator, Mapping

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import numpy as np
import seqio
import tensorflow as tf

from model_zoo.errors import UserError
from tasks import pipeline

BatchFn = Callable[[dict[str, np.ndarray]], np.ndarray]
_OutputType = seqio.metrics.ModelOutputType


class MetricTypeError(UserError, TypeError):
  """A task's metric returned something other than a scalar."""


class TaskEvaluator:
  """A split's SeqIO evaluation, built once: the tasks are looked up and their examples read
  and cached here, so a run that evaluates every N steps pays for it once.

  `evaluate(predict_fn, score_fn)` then runs the model functions and the tasks' metrics.
  The functions get unpacked feature-converter batches (dicts of int32 [rows, length]).
  `predict_fn` returns the predicted targets as int tokens [batch_size, length], 0 after
  EOS (for prefix-LM batches only the continuation, not the inputs); `score_fn` returns
  each row's target log-likelihood, float [batch_size]. Every process sees the whole
  split in the same order, cut into global batches of `batch_size` (the last one padded
  with all-zero rows, whose outputs are dropped), and passes its rows
  [shard_index * local, (shard_index + 1) * local) to the function, local = batch_size //
  num_shards. The function must return the outputs of the whole global batch, every
  process's rows in order (as an all-gather of the sharded output gives), so that each
  process computes the same metrics. A function no metric needs may be None; a task
  without metrics gets {}. seqio writes no files.
  """

  def __init__(
      self,
      mixture_or_task_name: str,
      task_feature_lengths: Mapping[str, int],
      split: str,
      batch_size: int,
      *,
      feature_converter: str,
      module: str | None = None,
      shard_index: int = 0,
      num_shards: int = 1,
  ):
    if feature_converter not in pipeline.FEATURE_CONVERTERS:
      raise pipeline.DataError(
          f"feature_converter={feature_converter!r} is not one of "
          f"{sorted(pipeline.FEATURE_CONVERTERS)}"
      )
    if batch_size <= 0 or batch_size % num_shards or not 0 <= shard_index < num_shards:
      raise pipeline.DataError(
          f"evaluation needs a positive batch_size divisible by num_shards and 0 <= "
          f"shard_index < num_shards; got batch_size={batch_size}, num_shards={num_shards}, "
          f"shard_index={shard_index} (BATCH_SIZE is global, split over the processes)"
      )
    provider = pipeline.get_task_or_mixture(mixture_or_task_name, module=module)
    if split not in provider.splits:
      raise pipeline.DataError(
          f"{mixture_or_task_name!r} has no split {split!r}; it has {sorted(provider.splits)}"
      )
    self.tasks = [t for t in seqio.get_subtasks(provider) if split in t.splits]
    self._rows = (batch_size, shard_index, num_shards)
    self._evaluator = None
    if any(task.metric_objs for task in self.tasks):  # else no data needs reading
      self._evaluator = seqio.Evaluator(
          mixture_or_task_name,
          feature_converter=pipeline.FEATURE_CONVERTERS[feature_converter](pack=False),
          eval_split=split,
          sequence_length=dict(task_feature_lengths),
          logger_cls=(),
          async_compute_metrics=False,
      )
      for name, ds in self._evaluator.cached_task_datasets.items():
        if int(ds.cardinality()) == 0:
          raise pipeline.DataError(f"task {name!r} split {split!r} has no examples to evaluate")

  def evaluate(
      self, predict_fn: BatchFn | None, score_fn: BatchFn | None
  ) -> dict[str, dict[str, float]]:
    """Metrics of each task that has the split: {task: {metric: value}}."""
    results = {t.name: {} for t in self.tasks}
    model_fns = _model_fns(self.tasks, predict_fn, score_fn, *self._rows)
    if self._evaluator is None:
      return results
    metrics, _ = self._evaluator.evaluate(compute_metrics=True, model_fns=model_fns)
    for task_name, task_metrics in metrics.result().items():
      results[task_name] = {k: _as_float(task_name, k, v) for k, v in task_metrics.items()}
    return results


def evaluate_task(
    mixture_or_task_name: str,
    task_feature_lengths: Mapping[str, int],
    split: str,
    batch_size: int,
    *,
    feature_converter: str,
    predict_fn: BatchFn | None,
    score_fn: BatchFn | None,
    module: str | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
) -> dict[str, dict[str, float]]:
  """One evaluation (see TaskEvaluator): {task: {metric: value}}."""
  evaluator = TaskEvaluator(
      mixture_or_task_name,
      task_feature_lengths,
      split,
      batch_size,
      feature_converter=feature_converter,
      module=module,
      shard_index=shard_index,
      num_shards=num_shards,
  )
  return evaluator.evaluate(predict_fn, score_fn)


def _model_fns(
    tasks: list[seqio.Task],
    predict_fn: BatchFn | None,
    score_fn: BatchFn | None,
    batch_size: int,
    shard_index: int,
    num_shards: int,
) -> dict[_OutputType, Callable[[tf.data.Dataset], list[tuple[int, np.ndarray]]]]:
  """seqio model functions for the output types the tasks' metrics need; fails on a gap."""
  needed = {}
  for task in tasks:
    for metric in task.metric_objs:
      needed.setdefault(metric.model_output_type, task.name)
  given = {
      _OutputType.PREDICTION: ("predict_fn", predict_fn),
      _OutputType.SCORE: ("score_fn", score_fn),
  }
  model_fns = {}
  for kind, task_name in needed.items():
    if kind not in given:
      raise pipeline.DataError(
          f"task {task_name!r} has a metric of type {kind.name}; podzoo evaluates metrics of "
          "predictions (predict_fn) or scores (score_fn) only"
      )
    arg_name, fn = given[kind]
    if fn is None:
      raise ValueError(f"task {task_name!r} has metrics that need {arg_name}; got {arg_name}=None")
    ndim = 2 if kind == _OutputType.PREDICTION else 1
    model_fns[kind] = _dataset_fn(fn, arg_name, ndim, batch_size, shard_index, num_shards)
  return model_fns


def _dataset_fn(
    fn: BatchFn, name: str, ndim: int, batch_size: int, shard_index: int, num_shards: int
) -> Callable[[tf.data.Dataset], list[tuple[int, np.ndarray]]]:
  """Wraps a numpy batch function as seqio's `model_fn(enumerated dataset) -> [(index, out)]`."""

  def model_fn(ds: tf.data.Dataset) -> list[tuple[int, np.ndarray]]:
    indices, outputs = [], []
    for index, batch, num_real in _global_batches(ds, batch_size):
      local = {k: v[_rows(batch_size, shard_index, num_shards)] for k, v in batch.items()}
      out = np.asarray(fn(local))
      if out.ndim != ndim or out.shape[0] != batch_size:
        raise ValueError(
            f"{name} must return an array of shape [batch_size={batch_size}"
            f"{', length' if ndim == 2 else ''}] for the whole global batch (all "
            f"{num_shards} processes' rows); got shape {out.shape}"
        )
      indices.extend(index.tolist())
      outputs.append(out[:num_real])
    if ndim == 2:  # batches may come back with different lengths; 0 pads past EOS
      width = max(o.shape[1] for o in outputs)
      outputs = [np.pad(o, [(0, 0), (0, width - o.shape[1])]) for o in outputs]
    return list(zip(indices, np.concatenate(outputs)))

  return model_fn


def _global_batches(
    ds: tf.data.Dataset, batch_size: int
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray], int]]:
  """(example indices, batch padded to batch_size rows with zeros, number of real rows)."""
  for index, batch in ds.batch(batch_size).as_numpy_iterator():
    num_real = len(index)
    pad = batch_size - num_real
    yield index, {
        k: np.pad(pipeline.to_numpy(v), [(0, pad)] + [(0, 0)] * (v.ndim - 1))
        for k, v in batch.items()
    }, num_real


def _rows(batch_size: int, shard_index: int, num_shards: int) -> slice:
  local = batch_size // num_shards
  return slice(shard_index * local, (shard_index + 1) * local)


def _as_float(task: str, metric: str, value) -> float:
  value = value.value if isinstance(value, seqio.metrics.Scalar) else value
  try:
    return float(value)
  except TypeError as e:
    raise MetricTypeError(
        f"metric {metric!r} of task {task!r} returned {type(value).__name__}; podzoo "
        "reports scalar metrics only"
    ) from e


def format_table(results: Mapping[str, Mapping[str, float]]) -> str:
  """`results` of `evaluate_task` as an aligned text table (task, metric, value) to print."""
  rows = []
  for task, metrics in results.items():
    rows += [(task, k, f"{v:.4f}") for k, v in sorted(metrics.items())] or [
        (task, "(no metrics)", "")
    ]
  header = ("task", "metric", "value")
  widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
  lines = [
      f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}"
      for a, b, c in [header, tuple("-" * w for w in widths), *rows]
  ]
  return "\n".join(line.rstrip() for line in lines)
