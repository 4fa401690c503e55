"""Pre-training tasks over the catalog documents: the documents, the vocabulary's extra ids,
and the causal LM and UL2 examples rebuilt into the very documents they came from."""

import collections
import functools
import itertools

import gin
import numpy as np
import pytest
import seqio
import tensorflow as tf

from model_zoo.errors import ConfigError
from tasks.parallel import corpus, vocabulary as parallel_vocabulary
from tasks.pretraining import tasks as pretraining, text, vocabulary
from tasks.ul2 import denoisers
from tests.tasks import gin_fragments

VOCAB = vocabulary.pretraining_vocabulary()
FIRST_SENTINEL = VOCAB.vocab_size - vocabulary.NUM_SENTINELS
MODE_IDS = {mode: vocabulary.mode_id(mode) for mode in vocabulary.MODES}
EOS = 1
UL2_LENGTHS = {"inputs": 128, "targets": 128}  # gin/mixtures/catalog_ul2.gin's


def language_of_line() -> dict[tuple[str, str], set[str]]:
  """(split, line) -> the languages whose monolingual text of that split has the line."""
  owners = collections.defaultdict(set)
  for split in corpus.SPLITS:
    for lang in corpus.LANGUAGES:
      for line in corpus.monolingual(lang, split):
        owners[split, line].add(lang)
  return owners


def test_documents_are_runs_of_one_languages_messages_of_one_split():
  owners = language_of_line()
  for split in corpus.SPLITS:
    docs = text.documents(split)
    total = sum(len(corpus.monolingual(lang, split)) for lang in corpus.LANGUAGES)
    assert sum(len(d.split("\n")) for d in docs) == total  # every message, once
    for doc in docs:
      lines = doc.split("\n")
      assert 1 <= len(lines) <= text.MESSAGES_PER_DOCUMENT
      assert set.intersection(*(owners[split, line] for line in lines))  # one language has all
  train = {line for doc in text.documents("train") for line in doc.split("\n")}
  held_out = {line for doc in text.documents("validation") for line in doc.split("\n")}
  held_out_only = held_out - train  # a message may read the same in two splits' records
  assert len(held_out_only) > 0.9 * len(held_out)


def test_documents_interleave_the_languages():
  owners = language_of_line()
  first = text.documents("train")[:100]
  languages = {lang for doc in first for lang in owners["train", doc.split("\n")[0]]}
  assert len(languages) >= 15


def test_vocabulary_keeps_the_parallel_ids_and_adds_modes_below_the_sentinels():
  parallel = parallel_vocabulary.parallel_vocabulary()
  sample = text.documents("validation")[0]
  assert VOCAB.encode(sample) == parallel.encode(sample)
  assert VOCAB.vocab_size == vocabulary.VOCAB_SIZE == parallel.vocab_size + 103
  assert (
      vocabulary.VOCAB_SIZE <= vocabulary.MODEL_VOCAB_SIZE
      and vocabulary.MODEL_VOCAB_SIZE % 128 == 0
  )
  assert (
      sorted(MODE_IDS.values())
      == [8192, 8193, 8194]
      == list(range(parallel.vocab_size, FIRST_SENTINEL))
  )
  with pytest.raises(ConfigError, match=r"unknown UL2 denoiser 'Q'"):
    vocabulary.mode_id("Q")


def validation_examples(name: str, lengths, count: int) -> list[dict]:
  task = seqio.get_mixture_or_task(name)
  ds = task.get_dataset(lengths, "validation", shuffle=False, seed=0).take(count)
  return list(ds.as_numpy_iterator())


def test_causal_lm_examples_are_the_documents_and_eos():
  examples = validation_examples(pretraining.LM_TASK, {"targets": 1024}, 50)  # none cut
  for example, doc in zip(examples, text.documents("validation")[:50], strict=True):
    assert example["targets"][-1] == EOS and EOS not in example["targets"][:-1]
    assert VOCAB.decode(example["targets"][:-1].tolist()) == doc


def rebuilt(inputs: np.ndarray, targets: np.ndarray) -> list[int]:
  """The source tokens of a span-corrupted pair: each sentinel in the inputs replaced by what
  follows the same sentinel in the targets."""
  spans, current = {}, None
  for token in targets.tolist():
    if token >= FIRST_SENTINEL:
      current = token
      spans[current] = []
    else:
      spans[current].append(token)
  source = []
  for token in inputs.tolist():
    source += spans.pop(token) if token >= FIRST_SENTINEL else [token]
  assert not spans
  return source


@pytest.mark.parametrize("suffix", ["r", "x_long", "x_dense", "s"])
def test_ul2_examples_rebuild_the_documents_with_their_mode_token(suffix):
  name = f"{pretraining.UL2_MIXTURE}_{suffix}"
  mode = "S" if suffix == "s" else suffix[0].upper()
  examples = validation_examples(name, UL2_LENGTHS, 60)
  docs = [d for d in text.documents("validation") if len(VOCAB.encode(d)) >= 2][:60]
  for example, doc in zip(examples, docs, strict=True):
    inputs, targets = example["inputs"], example["targets"][:-1]
    assert inputs[0] == MODE_IDS[mode] and example["targets"][-1] == EOS
    assert not set(MODE_IDS.values()) & set(inputs[1:].tolist() + targets.tolist())
    tokens = inputs[1:].tolist() + targets.tolist() if mode == "S" else rebuilt(inputs[1:], targets)
    assert tokens == VOCAB.encode(doc)[: len(tokens)]
    assert len(tokens) == len(VOCAB.encode(doc)) or len(inputs) + len(targets) >= 127


def test_dense_corruption_uses_at_most_the_sentinels_it_was_given():
  ds = tf.data.Dataset.from_tensor_slices({"targets": np.arange(10, 1010).reshape(1, 1000)})
  features = {"inputs": seqio.Feature(VOCAB, add_eos=False), "targets": seqio.Feature(VOCAB)}
  corrupt = functools.partial(
      denoisers.span_corruption, mode_id=MODE_IDS["X"], noise_density=0.5, mean_span=3
  )
  with seqio.utils.map_seed_manager(0):
    (few,) = corrupt(ds, None, features, num_sentinels=10).as_numpy_iterator()
    (all_,) = corrupt(ds, None, features).as_numpy_iterator()
  assert np.sum(few["targets"] >= VOCAB.vocab_size - 10) == np.sum(few["targets"] >= 8192) == 10
  assert np.sum(all_["targets"] >= 8192) > 10
  for bad in (0, VOCAB.extra_ids + 1):
    with pytest.raises(ConfigError, match=rf"num_sentinels={bad}.*103 extra_ids"):
      corrupt(ds, None, features, num_sentinels=bad)


def test_mixture_samples_every_denoiser_and_fits_its_gin_file():
  mixture = seqio.get_mixture_or_task(pretraining.UL2_MIXTURE)
  assert {t.name for t in mixture.tasks} == {
      f"{pretraining.UL2_MIXTURE}_{s}" for s in ("r", "x_long", "x_dense", "s")
  }
  ds = mixture.get_dataset(UL2_LENGTHS, "train", shuffle=True, seed=0)
  modes = collections.Counter(
      int(ex["inputs"][0]) for ex in itertools.islice(ds.as_numpy_iterator(), 200)
  )
  assert set(modes) == set(MODE_IDS.values())
  gin_fragments.parse_with_tiny_encoder_decoder("gin/mixtures/catalog_ul2.gin")
  assert gin.query_parameter("MIXTURE_OR_TASK_NAME/macro.value") == pretraining.UL2_MIXTURE
  assert gin.query_parameter("TASK_FEATURE_LENGTHS/macro.value") == UL2_LENGTHS
  assert gin.query_parameter("TransformerConfig.vocab_size") == vocabulary.MODEL_VOCAB_SIZE
  gin.clear_config()
  gin_fragments.parse_with_tiny_encoder_decoder("gin/mixtures/catalog_lm.gin")
  assert gin.query_parameter("MIXTURE_OR_TASK_NAME/macro.value") == pretraining.LM_TASK
  assert gin.query_parameter("TransformerConfig.vocab_size") == vocabulary.MODEL_VOCAB_SIZE
  gin.clear_config()
