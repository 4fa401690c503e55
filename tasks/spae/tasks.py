"""SeqIO tasks over the SPAE image data: an image, and its word as the frozen LM's tokens.

For each config of `image_corpus.CONFIGS` ("tiny", "digits", "words"):

- `spae_<config>`: every example of the config, e.g. `spae_words` (32 words in four
  languages; an image shows its word, so the languages mix without ambiguity).
- `spae_<config>_<lang>`: the examples whose word is in `lang`, e.g. `spae_digits_de`. The
  digits config holds each digit image once per language, so `spae_digits` asks for a
  different word for the same image in each language; a model that should name a digit one
  way trains on one language's task (gin/mixtures/spae_digits.gin: `spae_digits_en`).

Splits: train, validation, test (`image_corpus`). "image" is float32 [side, side, 3] in
[0, 1] (the stored uint8 / 255); "targets" is the word in the pre-training vocabulary
(`tasks.pretraining.vocabulary`, the LM whose tokens SPAE's semantic layers aim at), without
EOS: the word's tokens are what an image means, not a sequence that ends. "word", "label",
"lang" and "id" pass through for evaluation (the `spae` feature converter drops them). Tasks
read the built dataset only when asked for data (build it with `python -m
tools.build_spae_images --config <name>`), so importing this module needs no data; it
registers every task, and importing it again is harmless.
"""

import functools

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from tasks.pretraining import vocabulary
from tasks.spae import image_corpus, image_dataset

PREFIX = "spae"
# A float row is 12 KB at side 32: 1,024 of them keep a task's buffer near 12 MB.
SHUFFLE_BUFFER_SIZE = 1024


def task_name(config: str, lang: str | None = None) -> str:
  """The task of `config` (and of `lang`'s words only, if given), e.g. "spae_digits_en"."""
  return f"{PREFIX}_{config}" if lang is None else f"{PREFIX}_{config}_{lang}"


def languages(config: image_corpus.ImageConfig) -> tuple[str, ...]:
  """The languages of `config`'s words, digits' first, in the config's order."""
  found = config.digits.languages if config.digits else ()
  found += tuple(lang for lang, _ in config.words.words) if config.words else ()
  return tuple(dict.fromkeys(found))


def _dataset_fn(
    split: str, shuffle_files: bool, seed: int | None = None, *, config: str, lang: str | None
) -> tf.data.Dataset:
  """The config's examples (`lang`'s only, if given), looked up at read time: the cache may
  be built after import."""
  ds = image_dataset.source(config).get_dataset(split, shuffle=shuffle_files, seed=seed)
  return ds if lang is None else ds.filter(lambda ex: ex["lang"] == lang)


@seqio.map_over_dataset
def _image_and_word(ex: dict) -> dict:
  """uint8 image -> float32 in [0, 1]; the word -> "targets" (text until tokenized)."""
  return {
      "image": tf.cast(ex["image"], tf.float32) / 255.0,
      "targets": ex["word"],
      "word": ex["word"],
      "label": ex["label"],
      "lang": ex["lang"],
      "id": ex["id"],
  }


def _without_word_boundaries(ds: tf.data.Dataset) -> tf.data.Dataset:
  """Drops the bare word-boundary piece ("▁", which sentencepiece emits before a word whose
  first letters have no piece of their own: "two" is "▁" "t" "wo"): it means nothing, and
  as the target of several words' images it would pull them all toward one code."""
  boundary = vocabulary.pretraining_vocabulary().tokenizer.piece_to_id("\u2581")

  def drop(ex):
    return {**ex, "targets": tf.boolean_mask(ex["targets"], ex["targets"] != boundary)}

  return ds.map(drop, num_parallel_calls=tf.data.AUTOTUNE)


def _register() -> None:
  if task_name("tiny") in seqio.TaskRegistry.names():
    return
  output_features = {
      "image": seqio.ContinuousFeature(dtype=tf.float32, rank=3),
      "targets": seqio.Feature(vocabulary.pretraining_vocabulary(), add_eos=False),
  }
  for config in image_corpus.CONFIGS.values():
    for lang in (None, *languages(config)):
      seqio.TaskRegistry.add(
          task_name(config.name, lang),
          source=seqio.FunctionDataSource(
              functools.partial(_dataset_fn, config=config.name, lang=lang),
              splits=image_corpus.SPLITS,
          ),
          preprocessors=[
              _image_and_word,
              seqio.preprocessors.tokenize,  # keeps "targets_pretokenized"
              _without_word_boundaries,
              seqio.CacheDatasetPlaceholder(),
          ],
          output_features=output_features,
          metric_fns=[],
          shuffle_buffer_size=SHUFFLE_BUFFER_SIZE,
      )


_register()
