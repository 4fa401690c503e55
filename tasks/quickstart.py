"""The quickstart task `kjv_genesis_lm`: causal LM over the Book of Genesis (KJV).

Small enough to train a model on a laptop CPU in minutes, and written the plain SeqIO way
(source -> preprocessors -> output features), so it doubles as the template for task
authors. Importing this module registers the task; importing it again is harmless.
"""

import functools
import pathlib

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import gin
import numpy as np
import seqio
import tensorflow as tf

from model_zoo.errors import ConfigError
from tasks import cache, vocabularies

TASK_NAME = "kjv_genesis_lm"
QUICKSTART_VOCAB_SIZE = 1024
CORPUS_PATH = pathlib.Path(__file__).parent / "data" / "kjv_genesis.txt"
VALIDATION_EVERY = 20  # line i is in validation iff i % 20 == 19


def split_lines(split: str) -> list[str]:
  """The verses of `split`: every 20th line (index % 20 == 19) is validation, the rest train.

  A fixed interleaved split keeps both splits spread over the whole book, so validation
  text is in-distribution but never seen in training.
  """
  if split not in ("train", "validation"):
    raise ConfigError(f"{TASK_NAME} has splits 'train' and 'validation'; got {split!r}")
  lines = CORPUS_PATH.read_text(encoding="utf-8").splitlines()
  want_validation = split == "validation"
  return [
      line
      for i, line in enumerate(lines)
      if (i % VALIDATION_EVERY == VALIDATION_EVERY - 1) == want_validation
  ]


def _dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
  """One file, so nothing to shuffle here: the Task shuffles (and shards) the examples."""
  del shuffle_files, seed
  return tf.data.Dataset.from_tensor_slices({"text": split_lines(split)})


def train_text_file() -> pathlib.Path:
  """The train split as a text file (cached), for training vocabularies without validation text."""
  train_text = cache.cache_dir("quickstart") / "kjv_genesis_train.txt"
  data = ("\n".join(split_lines("train")) + "\n").encode("utf-8")
  if not train_text.exists() or train_text.read_bytes() != data:
    cache.atomic_write(train_text, data)
  return train_text


def quickstart_vocabulary() -> seqio.SentencePieceVocabulary:
  """SentencePiece (1024 pieces) trained on the train split only, cached after the first call."""
  return vocabularies.cached_sentencepiece_vocabulary([train_text_file()], QUICKSTART_VOCAB_SIZE)


def _register() -> None:
  if TASK_NAME in seqio.TaskRegistry.names():
    return
  # Run configs print it as the baseline the quickstart must beat.
  with gin.unlock_config():  # the task may be imported after a run's config is final
    gin.external_configurable(unigram_entropy_nats, module="tasks.quickstart")
  seqio.TaskRegistry.add(
      TASK_NAME,
      source=seqio.FunctionDataSource(
          _dataset_fn,
          splits=("train", "validation"),
          num_input_examples={s: len(split_lines(s)) for s in ("train", "validation")},
      ),
      preprocessors=[
          functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
          seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(),
          seqio.preprocessors.append_eos_after_trim,
      ],
      output_features={
          "targets": seqio.Feature(quickstart_vocabulary(), add_eos=True),
      },
      metric_fns=[],
      shuffle_buffer_size=2048,  # more than the corpus: a full shuffle each epoch
  )


def _tokens(task: seqio.Task, split: str) -> np.ndarray:
  ds = task.get_dataset(sequence_length=None, split=split, shuffle=False)
  return np.concatenate([ex["targets"] for ex in ds.as_numpy_iterator()])


def unigram_entropy_nats(task_name: str = TASK_NAME, split: str = "validation") -> float:
  """Cross-entropy (nats/token, EOS included) of a unigram model fit on train, scored on `split`.

  With c(t) the count of token t in the tokenized train split (N tokens in all) and V the
  vocabulary size, p(t) = (c(t) + 1) / (N + V) (add-one smoothing), and the result is
  -1/M * sum_j log p(x_j) over the M tokens x_j of `split`. A language model that does not
  beat this number on validation has learned nothing beyond token frequencies; the
  quickstart's eval loss must be below it.
  """
  task = seqio.get_mixture_or_task(task_name)
  vocab_size = task.output_features["targets"].vocabulary.vocab_size
  counts = np.bincount(_tokens(task, "train"), minlength=vocab_size)
  log_p = np.log(counts + 1.0) - np.log(counts.sum() + vocab_size)
  return float(-log_p[_tokens(task, split)].mean())


_register()
