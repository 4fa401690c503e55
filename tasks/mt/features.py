"""What every MT, MASS and back-translation example looks like, shared by tasks and adapters.

Inputs start with the `<2xx>` tag of the language to produce, as one id prepended after
tokenization (tokenizing "<2de> text" would add a stray "▁" id before the tag).
"""

from typing import Mapping

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from tasks import pipeline
from tasks.parallel import vocabulary as parallel_vocabulary

# No EOS after the inputs: an encoder sees where its inputs end anyway, and in a decoder-only
# prefix LM (`prefix_lm` converter) an EOS would sit mid-sequence where the model is taught to
# stop. Targets end with EOS so the decoder learns when a translation is complete.
INPUTS_ADD_EOS = False


def output_features(vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
  return {
      "inputs": seqio.Feature(vocabulary, add_eos=INPUTS_ADD_EOS),
      "targets": seqio.Feature(vocabulary, add_eos=True),
  }


def tag_id(vocabulary: seqio.SentencePieceVocabulary, lang: str) -> int:
  """The id of `<2lang>`, one piece in a vocabulary that passes pipeline.check_special_tokens."""
  return vocabulary.tokenizer.piece_to_id(parallel_vocabulary.language_tag(lang))


def prompt_prefix(vocabulary: seqio.SentencePieceVocabulary, output_language: str) -> list[int]:
  """What every translation input into `output_language` starts with: its `<2xx>` tag id.

  For `trainers.predict_fns.text_predict_fn(..., prompt_prefix=..., prompt_eos=INPUTS_ADD_EOS)`,
  so a model asked to translate sees inputs laid out as in training. Fails, naming the tool
  flag to add it, if the vocabulary lacks the tag.
  """
  pipeline.check_special_tokens(vocabulary, [parallel_vocabulary.language_tag(output_language)])
  return [tag_id(vocabulary, output_language)]


def mask_id(vocabulary: seqio.SentencePieceVocabulary) -> int:
  return vocabulary.tokenizer.piece_to_id(parallel_vocabulary.MASK_TOKEN)


def prepend_id(dataset: tf.data.Dataset, *, token_id: int, key: str = "inputs") -> tf.data.Dataset:
  """Puts `token_id` in front of the tokenized feature `key` of every example."""

  @seqio.map_over_dataset
  def prepend(example):
    tokens = example[key]
    return {**example, key: tf.concat([tf.constant([token_id], tokens.dtype), tokens], axis=0)}

  return prepend(dataset)


def drop_empty(dataset: tf.data.Dataset, *, keys: tuple[str, ...]) -> tf.data.Dataset:
  """Keeps examples whose text features `keys` are all non-empty (the corpus has "" for a
  language that did not translate a message)."""
  return dataset.filter(
      lambda example: tf.reduce_all([tf.strings.length(example[k]) > 0 for k in keys])
  )
