"""The one place that turns a SeqIO task or mixture into numpy batches for the trainer.

Everything TensorFlow stops here: callers get dicts of numpy arrays shaped (local batch,
length), as produced by a SeqIO feature converter: int32 ids and masks, float32 for a float
feature (the prefix scorer's `decoder_rewards`; the ASR converter's log-mel frames, shaped
(local batch, length, mel bins); the SPAE converter's images, (local batch, side, side, 3)).
Mistakes a user can make in a run config (a misspelt task, a module that does not import, a
batch size that does not split over the processes, a split too small for one batch) fail
here with a `DataError` that names the setting to change.
"""

import difflib
import importlib
import traceback
from typing import Mapping, Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import numpy as np
import seqio
import tensorflow as tf

from model_zoo.errors import ConfigError
from tasks import cached
from tasks import quickstart  # noqa: F401  (registers the shipped task)
from tasks.asr import feature_converter as asr
from tasks.controlled import feature_converter as controlled
from tasks.spae import feature_converter as spae

FEATURE_CONVERTERS = {
    "decoder": seqio.DecoderFeatureConverter,
    "prefix_lm": seqio.PrefixLMFeatureConverter,
    "encdec": seqio.EncDecFeatureConverter,
    "prefix_scorer": controlled.PrefixScorerFeatureConverter,
    "asr": asr.AsrFeatureConverter,
    "spae": spae.SpaeFeatureConverter,
}


class DataError(ConfigError):
  """A task, split, batch size or module that cannot produce the requested batches."""


def import_task_module(module: str | None) -> None:
  """Imports a user's task module (like T5X's MIXTURE_OR_TASK_MODULE) so its tasks register."""
  if not module:
    return
  try:
    importlib.import_module(module)
  except ImportError as e:
    missing = getattr(e, "name", None)
    if missing and not (module == missing or module.startswith(missing + ".")):
      raise DataError(
          f"the task module {module!r} (MIXTURE_OR_TASK_MODULE) was found, but an import "
          f"inside it failed: {e} ({_where_raised(e)}). Install what it needs or fix that "
          "import."
      ) from e
    raise DataError(
        f"could not import the task module {module!r} (set by MIXTURE_OR_TASK_MODULE / "
        f"the `module` argument): {e}. Expected an importable module name such as "
        "'my_project.tasks'; check the spelling and that it is on PYTHONPATH."
    ) from e


def _where_raised(error: BaseException) -> str:
  """ "file:line: code" of the innermost frame outside Python's import machinery."""
  frames = [
      f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<frozen")
  ]
  if not frames:
    return "where unknown"
  frame = frames[-1]
  return f"{frame.filename}:{frame.lineno}: {frame.line}"


def check_vocabulary_files(provider: seqio.Task | seqio.Mixture) -> None:
  """Names a task's missing sentencepiece model file before SeqIO fails deep inside TensorFlow."""
  for task in tasks_of(provider):
    for feature_name, feature in task.output_features.items():
      path = getattr(feature.vocabulary, "sentencepiece_model_file", None)
      if path and not tf.io.gfile.exists(path):
        raise DataError(
            f"task {task.name!r} (feature {feature_name!r}) uses the sentencepiece model "
            f"{path}, which does not exist. Fix the path in the task's seqio.Feature, or "
            f"train it: python -m tools.train_vocabulary --mixture {task.name} --module "
            f"<your task module> --model_prefix {path.removesuffix('.model')} --vocab_size N"
        )


def get_task_or_mixture(name: str, *, module: str | None = None) -> seqio.Task | seqio.Mixture:
  """The registered task or mixture `name`, after importing `module`."""
  import_task_module(module)
  known = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
  if name not in known:
    close = difflib.get_close_matches(name, sorted(known), n=5)
    hint = f"Did you mean {', '.join(map(repr, close))}? " if close else ""
    raise DataError(
        f"no SeqIO task or mixture named {name!r} (MIXTURE_OR_TASK_NAME). {hint}"
        f"{len(known)} are registered. If it is defined in your own module, pass that "
        "module as MIXTURE_OR_TASK_MODULE so it is imported first."
    )
  return seqio.get_mixture_or_task(name)


def vocab_size(
    mixture_or_task_name: str, feature: str = "targets", *, module: str | None = None
) -> int:
  """Vocabulary size of an output feature; the model's embedding must be at least this big."""
  provider = get_task_or_mixture(mixture_or_task_name, module=module)
  check_vocabulary_files(provider)
  features = provider.output_features
  if feature not in features:
    raise DataError(
        f"{mixture_or_task_name!r} has no output feature {feature!r}; " f"it has {sorted(features)}"
    )
  if isinstance(features[feature], seqio.ContinuousFeature):
    raise DataError(
        f"{mixture_or_task_name!r}'s feature {feature!r} holds numbers (e.g. log-mel frames), "
        "not token ids, so it has no vocabulary size; ask for a token feature such as 'targets'."
    )
  return features[feature].vocabulary.vocab_size


def tasks_of(provider: seqio.Task | seqio.Mixture) -> list[seqio.Task]:
  """The leaf tasks of a mixture (or the task itself): features are declared per task."""
  return provider.tasks if isinstance(provider, seqio.Mixture) else [provider]


def check_features(
    mixture_or_task_name: str, feature_converter: str, *, module: str | None = None
) -> None:
  """Fails early, naming the task, if it lacks a feature the model's converter needs.

  Otherwise SeqIO fails deep inside the converter with a KeyError that names neither the
  task nor the setting to change.
  """
  _check_converter(feature_converter)
  _check_provider_features(
      get_task_or_mixture(mixture_or_task_name, module=module),
      mixture_or_task_name,
      feature_converter,
  )


def _check_provider_features(
    provider: seqio.Task | seqio.Mixture, mixture_or_task_name: str, feature_converter: str
) -> None:
  """check_features on an already looked-up provider (get_batch_iterator has one)."""
  needed = list(FEATURE_CONVERTERS[feature_converter].TASK_FEATURES)
  for task in tasks_of(provider):
    missing = [f for f in needed if f not in task.output_features]
    if missing:
      raise DataError(
          f"task {task.name!r} (in {mixture_or_task_name!r}) has output features "
          f"{sorted(task.output_features)} but the {feature_converter!r} feature converter "
          f"needs {list(needed)}; it lacks {missing}. Pick a model whose converter matches "
          "('decoder' reads only 'targets'; 'prefix_lm' and 'encdec' read 'inputs' and "
          "'targets'; 'prefix_scorer' also 'rewards', as a rollout task has; 'asr' reads "
          "log-mel 'inputs' and 'targets', as the asr_* tasks have; 'spae' reads 'image' and "
          "'targets', as the spae_* tasks have), or add the missing output feature to the task."
      )


def _is_one_piece(vocabulary: seqio.Vocabulary, piece: str) -> bool:
  """Whether `piece` has its own id (SentencePiece prefixes '▁' when encoding text alone)."""
  if isinstance(vocabulary, seqio.SentencePieceVocabulary):
    return vocabulary.tokenizer.piece_to_id(piece) != vocabulary.unk_id
  return len(vocabulary.encode(piece)) == 1


def check_special_tokens(vocabulary: seqio.Vocabulary, required: Sequence[str]) -> None:
  """Fails if a piece the task relies on (a `<2xx>` tag, a UL2 mode token) is not one id.

  A missing piece is silently split into several ordinary ids, so the model never sees the
  tag it is meant to condition on.
  """
  missing = [piece for piece in required if not _is_one_piece(vocabulary, piece)]
  if missing:
    raise DataError(
        f"the vocabulary lacks the special tokens {missing} (each must encode to a single "
        "id). Retrain it with `python -m tools.train_vocabulary`, adding language tags with "
        "--language_tags (e.g. --language_tags de,fr for <2de>,<2fr>), UL2 mode tokens with "
        "--ul2_mode_tokens, or any other piece with --user_defined_symbols."
    )


def model_feature_shapes(
    feature_converter: str, task_feature_lengths: Mapping[str, int], batch_size: int, pack: bool
) -> dict[str, tuple[int, ...]]:
  """Shapes of one batch of `feature_converter`, from SeqIO's spec alone (no data is read):
  (batch, length), then the converter's `MODEL_FEATURE_TRAILING_DIMS` of the feature if any
  (the ASR converter's mel bins). A converter whose trailing dimensions follow the lengths
  makes it a function of the task feature lengths (the SPAE converter: an image's side)."""
  _check_converter(feature_converter)
  converter_cls = FEATURE_CONVERTERS[feature_converter]
  lengths = converter_cls(pack=pack).get_model_feature_lengths(dict(task_feature_lengths))
  trailing = getattr(converter_cls, "MODEL_FEATURE_TRAILING_DIMS", {})
  if callable(trailing):
    trailing = trailing(task_feature_lengths)
  return {name: (batch_size, length, *trailing.get(name, ())) for name, length in lengths.items()}


def _check_converter(feature_converter: str) -> None:
  if feature_converter not in FEATURE_CONVERTERS:
    raise DataError(
        f"feature_converter={feature_converter!r} is not one of {sorted(FEATURE_CONVERTERS)}; "
        "use 'decoder' for decoder-only models, 'prefix_lm' or 'encdec' for inputs+targets, "
        "'prefix_scorer' for rollouts with rewards, 'asr' for log-mel inputs+targets, 'spae' "
        "for images with their words."
    )


class SavableBatchIterator:
  """One pass of numpy batches whose position can be saved and restored in constant time.

  The position is tf.data's own iterator state (shuffle buffer, packing carry-over, the
  mixture's sampling state), written with tf.train.Checkpoint: restoring it costs the same
  at batch 10 as at batch 100,000, where `skip(n)` would read n batches again. The first
  batch is read here, so an empty pass fails at once, and held for the first next().
  """

  def __init__(self, iterator, describe_empty: str):
    self._iterator = iterator
    self._held = next(self._iterator, None)
    if self._held is None:
      raise DataError(describe_empty)

  def __iter__(self) -> "SavableBatchIterator":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch, self._held = self._held, None
    batch = batch if batch is not None else next(self._iterator)
    return {k: to_numpy(v) for k, v in batch.items()}

  def save(self, path: str) -> None:
    """Writes the position (files whose names begin with `path`): after a restore, the next
    batch is the one after the last batch returned."""
    if self._held is not None:  # tf.data's state is one batch past the position
      raise RuntimeError("save() before the first batch was taken: nothing to save")
    tf.train.Checkpoint(iterator=self._iterator).write(path)

  def restore(self, path: str) -> None:
    """Continues from the position saved at `path` by a pass over the same pipeline."""
    tf.train.Checkpoint(iterator=self._iterator).read(path).assert_consumed()
    self._held = None


def to_numpy(feature) -> np.ndarray:
  """int32 ids and masks; a float feature (rewards) stays float32 rather than being truncated."""
  array = np.asarray(feature)
  return array.astype(np.float32 if np.issubdtype(array.dtype, np.floating) else np.int32)


class Batches:
  """Numpy batches of one tf.data pipeline, built once; each iteration is a fresh pass.

  Evaluation iterates it once per eval: the task lookup, preprocessing graph and converter
  are built here once, not at every eval. Functions a task calls through tf.numpy_function
  or tf.py_function keep no state in a saved position, so they must be pure (the same output
  for the same input), as every shipped task's are.
  """

  def __init__(self, dataset: tf.data.Dataset, describe_empty: str):
    options = tf.data.Options()
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    self._dataset = dataset.with_options(options)
    self._describe_empty = describe_empty
    self._first_pass = self._pass()  # an empty split fails here, not at the first step

  def _pass(self) -> SavableBatchIterator:
    return SavableBatchIterator(iter(self._dataset), self._describe_empty)

  def __iter__(self) -> SavableBatchIterator:
    """The pass begun by the emptiness check first (nothing is read twice), then new ones."""
    first_pass, self._first_pass = self._first_pass, None
    return first_pass if first_pass is not None else self._pass()


def get_batches(
    mixture_or_task_name: str,
    task_feature_lengths: Mapping[str, int],
    split: str,
    batch_size: int,
    *,
    feature_converter: str = "decoder",
    pack: bool = True,
    shuffle: bool = True,
    seed: int | None = 0,
    num_epochs: int | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    start_batch: int = 0,
    module: str | None = None,
    cache_dir: str | None = None,
) -> Batches:
  """This process's share of the global batches, from `start_batch` on, as a re-iterable.

  `batch_size` is global: each of the `num_shards` processes gets a disjoint shard of the
  examples (seqio.ShardInfo: whole files where the source has enough of them, else every
  num_shards-th example) and yields `batch_size // num_shards` rows. Given `seed`,
  the stream is deterministic: a resumed run restores a pass's saved position
  (`SavableBatchIterator`), or, from a checkpoint without one, skips `start_batch` batches,
  and sees exactly the batches an uninterrupted one would. `num_epochs=None` repeats forever.
  The first batch is built before returning, so an empty split fails here, not later.
  With `cache_dir` (where `python -m trainers.cache_tasks` wrote the tasks), each task's
  preprocessing up to its CacheDatasetPlaceholder is read from there (tasks/cache_job.py).
  """
  _check_converter(feature_converter)
  if batch_size <= 0 or batch_size % num_shards:
    raise DataError(
        f"BATCH_SIZE={batch_size} (the global batch size) must be a positive multiple of "
        f"the number of processes ({num_shards}), which each get an equal share; "
        f"set BATCH_SIZE to a multiple of {num_shards}."
    )
  if not 0 <= shard_index < num_shards:
    raise DataError(
        f"shard_index={shard_index} must be in [0, num_shards={num_shards}); it is this "
        "process's index (jax.process_index()) among num_shards (jax.process_count())."
    )
  provider = get_task_or_mixture(mixture_or_task_name, module=module)
  _check_provider_features(provider, mixture_or_task_name, feature_converter)
  check_vocabulary_files(provider)
  if split not in provider.splits:
    raise DataError(
        f"{mixture_or_task_name!r} has no split {split!r}; it has {sorted(provider.splits)}"
    )
  if cache_dir is not None:
    cached.check_cached(mixture_or_task_name, tasks_of(provider), cache_dir)
  local_batch = batch_size // num_shards
  ds = seqio.get_dataset(
      provider,
      task_feature_lengths=dict(task_feature_lengths),
      feature_converter=FEATURE_CONVERTERS[feature_converter](pack=pack),
      dataset_split=split,
      shuffle=shuffle,
      seed=seed,
      num_epochs=num_epochs,
      shard_info=seqio.ShardInfo(index=shard_index, num_shards=num_shards),
      use_cached=cache_dir is not None,
      verbose=False,
  )
  return Batches(
      ds.batch(local_batch, drop_remainder=True).skip(start_batch),
      f"{mixture_or_task_name!r} split {split!r} with lengths {dict(task_feature_lengths)} "
      f"gives no full batch of {local_batch} rows (BATCH_SIZE={batch_size} over "
      f"{num_shards} process(es), pack={pack}, num_epochs={num_epochs}, "
      f"start_batch={start_batch}). Expected shard {shard_index} of the split to fill at least "
      "one batch; check that the split has data, or lower BATCH_SIZE.",
  )


def get_batch_iterator(*args, **kwargs) -> SavableBatchIterator:
  """One pass over `get_batches(...)` (same arguments), whose position can be saved."""
  return iter(get_batches(*args, **kwargs))
