"""Instruction tasks over the parallel corpus: translation, language identification, country codes.

Each reads the corpus' TFDS dataset (`tasks.parallel.tfds_dataset.prepare()`) through
SeqIO: one example per catalog message, a text feature per language ("" where it is
untranslated).
"""

import collections
import functools

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from tasks import metrics
from tasks.flan import instructions, iso_codes
from tasks.flan.instructions import Example, Instance, InstructionTask
from tasks.flan.templates import Template
from tasks.parallel import corpus, tfds_dataset

COUNTRY_DOMAIN = "iso_3166-1"


@functools.cache
def corpus_source(domain: str | None = None) -> seqio.FunctionDataSource:
  """The corpus' TFDS source (or its messages of one catalog domain), shuffled when asked.

  Filtering by domain here spares rendering thousands of messages that ask nothing.
  """

  def read_split(split: str) -> tf.data.Dataset:
    dataset = tfds_dataset.prepare().get_dataset(split, shuffle=False)
    return dataset if domain is None else dataset.filter(lambda ex: ex["domain"] == domain)

  return instructions.shuffling_source(read_split, corpus.SPLITS)


def _languages(example: Example) -> list[str]:
  return [lang for lang in corpus.LANGUAGES if example[lang]]


def translation_instances(example: Example) -> list[Instance]:
  """English to each language the message has, and back: the direction is the group."""
  names = iso_codes.language_names()
  english = example[corpus.SOURCE_LANGUAGE]
  instances = []
  for lang in _languages(example):
    if lang == corpus.SOURCE_LANGUAGE:
      continue
    for (source, text), (target, answer) in [
        ((corpus.SOURCE_LANGUAGE, english), (lang, example[lang])),
        ((lang, example[lang]), (corpus.SOURCE_LANGUAGE, english)),
    ]:
      fields = {
          "text": text,
          "source_language": names[source],
          "target_language": names[target],
      }
      instances.append(Instance(fields, answer, subject=text, group=f"{source}-{target}"))
  return instances


@functools.cache
def _languages_writing() -> dict[str, frozenset[str]]:
  """Text -> the languages that write it somewhere in the corpus (both splits)."""
  languages = collections.defaultdict(set)
  for split in corpus.SPLITS:
    for example in instructions.source_examples(corpus_source(), split):
      for lang in _languages(example):
        languages[example[lang]].add(lang)
  return {text: frozenset(langs) for text, langs in languages.items()}


@functools.cache
def _other_language_names(lang: str) -> tuple[str, ...]:
  names = iso_codes.language_names()
  return tuple(names[other] for other in corpus.LANGUAGES if other != lang)


def langid_instances(example: Example) -> list[Instance]:
  """One question per text of the message whose language is unambiguous.

  A text that another language writes identically anywhere in the corpus ("Online") is
  left out: no single answer would be right. So is the English text of a message that
  some language lacks, since the corpus drops a translation identical to the English
  ("Angola" is English, German, Spanish, ...).
  """
  names = iso_codes.language_names()
  writers = _languages_writing()
  languages = _languages(example)
  if len(languages) < len(corpus.LANGUAGES):
    languages.remove(corpus.SOURCE_LANGUAGE)
  return [
      Instance(
          {"text": example[lang]},
          names[lang],
          subject=example[lang],
          distractors=_other_language_names(lang),
      )
      for lang in languages
      if writers[example[lang]] == {lang}
  ]


@functools.cache
def _other_codes(code: str) -> tuple[str, ...]:
  return tuple(sorted(set(iso_codes.country_codes().values()) - {code}))


def country_code_instances(example: Example) -> list[Instance]:
  """A country's name in each language the message has -> its ISO 3166-1 alpha-2 code."""
  codes = iso_codes.country_codes()
  code = codes.get(example[corpus.SOURCE_LANGUAGE])
  if example["domain"] != COUNTRY_DOMAIN or code is None:
    return []
  return [
      Instance(
          {"country": example[lang]}, code, subject=example[lang], distractors=_other_codes(code)
      )
      for lang in _languages(example)
  ]


TRANSLATION = InstructionTask(
    name="translation",
    source=corpus_source,
    instances=translation_instances,
    templates=(
        Template(
            "translate_from_to", 'Translate "{text}" from {source_language} to {target_language}.'
        ),
        Template("what_is_in", 'What is "{text}" in {target_language}?'),
        Template("language_colon", "{source_language}: {text}\n{target_language}:"),
        Template("text_then_instruction", "{text}\nTranslate this into {target_language}."),
    ),
    metric_fns=(metrics.bleu, metrics.chrf),
)
LANGUAGE_ID = InstructionTask(
    name="langid",
    source=corpus_source,
    instances=langid_instances,
    templates=(
        Template("which_language", 'Which language is "{text}" written in?'),
        Template("text_then_question", "{text}\nWhat language is the text above?"),
        Template("identify", "Identify the language of this text: {text}"),
        Template("which_language_options", 'Which language is "{text}" written in?\n{options}'),
        Template("text_then_options", "{text}\nWhat language is the text above?\n{options}"),
    ),
    metric_fns=(metrics.accuracy,),
)
COUNTRY_CODE = InstructionTask(
    name="country_code",
    source=functools.partial(corpus_source, COUNTRY_DOMAIN),
    instances=country_code_instances,
    templates=(
        Template("what_code", "What is the two-letter ISO 3166-1 code of {country}?"),
        Template("country_colon", "Country: {country}\nISO 3166-1 alpha-2 code:"),
        Template("code_options", "Which ISO 3166-1 alpha-2 code belongs to {country}?\n{options}"),
        Template("country_colon_options", "Country: {country}\n{options}\nISO 3166-1 code:"),
    ),
    metric_fns=(metrics.accuracy,),
)
