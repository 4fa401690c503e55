"""Which corpus texts LangID trains and is evaluated on.

The same string can be a text of several languages ("Bolivia", "Radio", "Copiar" in es
and pt): no answer is wrong for it, so it teaches nothing and scores nothing. Training
leaves out every train text that more than one language has; the held-out set leaves out
every validation text that more than one language has, and every text that is also a
train text (of any language), so it measures generalisation, not memory.
"""

import collections

from model_zoo.errors import ConfigError
from tasks.parallel import corpus


def _languages_of(split: str) -> dict[str, set[str]]:
  languages = collections.defaultdict(set)
  for lang in corpus.LANGUAGES:
    for text in corpus.monolingual(lang, split):
      languages[text].add(lang)
  return languages


def training_examples() -> list[tuple[str, str]]:
  """(text, language) for every train text that exactly one language has."""
  languages = _languages_of("train")
  return [
      (text, lang)
      for lang in corpus.LANGUAGES
      for text in corpus.monolingual(lang, "train")
      if len(languages[text]) == 1
  ]


def held_out(max_per_language: int | None = None) -> dict[str, list[str]]:
  """Language -> its unambiguous validation texts never seen in training, in corpus order.

  `max_per_language` keeps the first that many of each language (None: all).
  """
  if max_per_language is not None and max_per_language < 1:
    raise ConfigError(f"max_per_language must be >= 1 (or None for all); got {max_per_language}")
  seen = _languages_of("train")
  languages = _languages_of("validation")
  return {
      lang: [
          text
          for text in corpus.monolingual(lang, "validation")
          if len(languages[text]) == 1 and text not in seen
      ][:max_per_language]
      for lang in corpus.LANGUAGES
  }
