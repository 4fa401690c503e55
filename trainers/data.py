"""The one trainer module that talks to `tasks/`: SeqIO tasks -> numpy batches, task metrics.

Importing this module imports SeqIO and TensorFlow, so the entry points import it when a
run starts, and the rest of the core (models, partitioner, trainer) stays TensorFlow-free.
Everything here speaks in the model's terms (its `FEATURE_CONVERTER_CLS`); the converter's
name is what crosses into `tasks.pipeline`.
"""

import functools
import itertools
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

import jax

from model_zoo import feature_converters
from model_zoo.decoding import controlled
from tasks import evaluation, pipeline
from tasks.controlled import rewards
from trainers import partitioning
from trainers.dataset_config import DatasetConfig

Converter = type[feature_converters.FeatureConverter]


def batches(cfg: DatasetConfig, converter: Converter, start_batch: int = 0) -> Iterable[dict]:
  """This process's rows of each global batch, from batch `start_batch` on.

  Built once: iterating again (each eval of a run) starts a new pass over the same pipeline.
  """
  return pipeline.get_batches(
      cfg.mixture_or_task_name,
      cfg.task_feature_lengths,
      cfg.split,
      cfg.batch_size,
      feature_converter=converter.name,
      pack=cfg.pack,
      shuffle=cfg.shuffle,
      seed=cfg.seed,
      num_epochs=cfg.num_epochs,
      shard_index=jax.process_index(),
      num_shards=jax.process_count(),
      start_batch=start_batch,
      module=cfg.module,
      cache_dir=cfg.cache_dir,
  )


def cache_tasks(cfg: DatasetConfig, **options) -> dict[str, str]:
  """Caches `cfg`'s tasks into cfg.cache_dir on Apache Beam (tasks/cache_job.py, whose
  `cache` takes `options`); each task's directory there."""
  from tasks import cache_job  # pylint: disable=g-import-not-at-top  (Apache Beam)

  return cache_job.cache(cfg.mixture_or_task_name, cfg.cache_dir, module=cfg.module, **options)


def global_batch_shapes(cfg: DatasetConfig, converter: Converter) -> dict[str, tuple[int, ...]]:
  """Shapes of one global batch (what the model is initialised and compiled for), from the
  converter's spec and the feature lengths: no data is read."""
  pipeline.check_features(cfg.mixture_or_task_name, converter.name, module=cfg.module)
  return pipeline.model_feature_shapes(
      converter.name, cfg.task_feature_lengths, cfg.batch_size, cfg.pack
  )


def take(batches: Iterable[dict], max_batches: Optional[int]) -> Iterator[dict]:
  """At most `max_batches` batches (all of them when None)."""
  return iter(batches) if max_batches is None else itertools.islice(batches, max_batches)


def output_features(cfg: DatasetConfig) -> dict[str, Any]:
  """The task's output features by name (each has `.vocabulary` and `.add_eos`)."""
  provider = pipeline.get_task_or_mixture(cfg.mixture_or_task_name, module=cfg.module)
  return dict(provider.output_features)


def vocabulary(cfg: DatasetConfig, feature: str = "targets"):
  """The task's seqio vocabulary of `feature` (for decoding predictions to text)."""
  return output_features(cfg)[feature].vocabulary


def sequence_reward(name: str, cfg: DatasetConfig, eos_id: int) -> Callable:
  """The registered reward `name` (tasks.controlled.rewards; the task's module may register
  more) of generated ids [N, L] given each row's room [N], over their text in the task's
  targets vocabulary: float32 [N], callable inside jax.jit."""
  pipeline.import_task_module(cfg.module)
  return rewards.jax_reward(rewards.get(name), vocabulary(cfg), eos_id)


def audio_prompt(path: str):
  """An ASR model's prompt from a 16 kHz mono WAV file: its log-mels [frames, mels], as the ASR
  tasks compute them (tasks/asr/features.py)."""
  from tasks.asr import features  # pylint: disable=g-import-not-at-top  (only ASR runs need it)

  return features.utterance_frames(path)


def check_vocab_fits(cfg: DatasetConfig, model_vocab_size: int) -> None:
  size = pipeline.vocab_size(cfg.mixture_or_task_name, module=cfg.module)
  if size > model_vocab_size:
    raise pipeline.DataError(
        f"The vocabulary of {cfg.mixture_or_task_name!r} has {size} ids but the model's embedding "
        f"has {model_vocab_size} rows; set --gin.TransformerConfig.vocab_size={size} (or larger)."
    )


# --- SeqIO evaluation: decodes and scores judged by the tasks' metric functions ------------
class TaskMetrics:
  """The split of `cfg` decoded (with `decoder`) and scored, judged by each task's metric
  functions: task name -> metric name -> value.

  `more_decoders` (name -> decoder) decode the split again, each reported as
  "<name>/<metric>" beside the first decoder's metrics: one run compares, e.g., beam search
  with and without shallow fusion. A decoder's own parameters (a fused LM's, a prefix
  scorer's) are arguments of the compiled step, not constants. Built once per run (tasks
  looked up, examples read and cached); call it with the current params at every eval. Each
  process feeds its rows of every global batch and gets every row's outputs back, so all
  processes compute the same metrics.
  """

  def __init__(
      self,
      model,
      partitioner: partitioning.Partitioner,
      cfg: DatasetConfig,
      decoder: Optional[Callable] = None,
      more_decoders: Optional[Mapping[str, Callable]] = None,
  ):
    self.partitioner = partitioner
    self._decoders = {"": decoder, **(more_decoders or {})}
    self._predict = {
        name: jax.jit(functools.partial(_predictions, model, decoder))
        for name, decoder in self._decoders.items()
    }
    self._score = jax.jit(model.score_batch)
    self._evaluator = evaluation.TaskEvaluator(
        cfg.mixture_or_task_name,
        cfg.task_feature_lengths,
        cfg.split,
        cfg.batch_size,
        feature_converter=model.FEATURE_CONVERTER_CLS.name,
        module=cfg.module,
        shard_index=jax.process_index(),
        num_shards=jax.process_count(),
    )

  def __call__(self, params) -> dict[str, dict[str, float]]:
    apply, results = self.partitioner.apply_gathered, {}
    for name, decoder in self._decoders.items():
      predict_params = (params, controlled.decoder_params(decoder))
      metrics = self._evaluator.evaluate(
          predict_fn=lambda batch: apply(self._predict[name], predict_params, batch),
          score_fn=lambda batch: apply(self._score, params, batch),
      )
      for task, values in metrics.items():
        results.setdefault(task, {}).update(
            {f"{name}/{k}" if name else k: v for k, v in values.items()}
        )
    return results


def _predictions(model, decoder, params, batch):
  """The decodes of `batch`; params = (the model's, the decoder's own or None)."""
  model_params, decoder_params = params
  decoder = controlled.with_decoder_params(decoder, decoder_params)
  return model.predict_batch(model_params, batch, decoder=decoder)[0]


def flatten(results: dict[str, dict[str, float]]) -> dict[str, float]:
  """{"task/metric": value} for metric writers."""
  return {
      f"{task}/{metric}": value
      for task, metrics in results.items()
      for metric, value in metrics.items()
  }


def report(results: dict[str, dict[str, float]]) -> str:
  """The task metrics as a printed table."""
  return evaluation.format_table(results)
