"""One SentencePiece vocabulary for every task over the parallel corpus (MT, MASS, Flan, LangID).

Trained on every language's train text, sampled across languages with a temperature (as
the MT mixture samples tasks) so that the smallest languages and every script get pieces
of their own and are not split into bytes; each `<2xx>` target-language tag, the MASS mask
and the line break are user-defined symbols, one id each.
"""

import math
import pathlib

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import numpy as np
import seqio

from model_zoo.errors import ConfigError
from tasks import cache, vocabularies
from tasks.parallel import corpus

# Measured with tools/vocab_coverage on every language's validation text: no script is
# spelt mostly in bytes at 8192 (the byte share is set by CHARACTER_COVERAGE, not the size);
# 16384 pieces would take ~20% fewer tokens per character (0.54 -> 0.43 over all languages)
# for twice the embedding rows, which CPU experiments pay for.
VOCAB_SIZE = 8192
MASK_TOKEN = "[MASK]"
# A piece of its own: SentencePiece's normaliser would turn line breaks into spaces, and
# Flan prompts are laid out in lines (answer options, blank lines between exemplars).
NEWLINE = "\n"
# Languages' shares of the training text are proportional to n_lang ** (1 / T), as for the
# ASR LM's languages: T=1 keeps the corpus's own proportions (en has 9x br's train lines),
# large T makes them equal; 3 draws 2.6x br's 847 lines and 0.58x en's 7,918.
TEMPERATURE = 3.0
# The share of the text's characters that get a piece of their own; the rarest rest are
# spelt in bytes. SentencePiece's default, 0.9995, leaves ~1,300 rare Han and Hangul
# characters to bytes: 7-9% of zh and ko tokens. 0.99995 brings that under 2% (ja 0.7%)
# for 3.6% more tokens over all languages; 1.0 gains under 1 point more for 2% more tokens.
CHARACTER_COVERAGE = 0.99995
_SAMPLE_SEED = 0


def language_tag(lang: str) -> str:
  """The target-language token that tells a multilingual model what to produce, e.g. `<2de>`."""
  corpus.check_language(lang)
  return f"<2{lang}>"


SPECIAL_TOKENS = tuple(language_tag(lang) for lang in corpus.LANGUAGES) + (MASK_TOKEN, NEWLINE)


def sampled_counts(sizes: dict[str, int], total: int, temperature: float) -> dict[str, int]:
  """Lines to draw per language: `total` split in proportion to size ** (1 / temperature).

  Largest remainders round the shares, so the counts add up to `total` exactly.
  """
  if not temperature > 0:
    raise ConfigError(f"the sampling temperature must be > 0 (1: proportional); got {temperature}")
  weights = {lang: n ** (1.0 / temperature) for lang, n in sizes.items()}
  norm = math.fsum(weights.values())
  exact = {lang: total * w / norm for lang, w in weights.items()}
  counts = {lang: math.floor(x) for lang, x in exact.items()}
  by_remainder = sorted(exact, key=lambda lang: counts[lang] - exact[lang])
  for lang in by_remainder[: total - sum(counts.values())]:
    counts[lang] += 1
  return counts


def sampled_lines() -> dict[str, list[str]]:
  """Language -> its train text, as many lines as `sampled_counts` gives it.

  A language's draw is all its lines as many whole times as fit, then a seeded choice of
  the remainder without replacement (in corpus order), so each line is drawn k or k + 1
  times. The total is the corpus's own number of train lines.
  """
  texts = {lang: corpus.monolingual(lang, "train") for lang in corpus.LANGUAGES}
  counts = sampled_counts(
      {lang: len(t) for lang, t in texts.items()}, sum(map(len, texts.values())), TEMPERATURE
  )
  rng = np.random.default_rng(_SAMPLE_SEED)
  draws = {}
  for lang, text in texts.items():
    repeats, rest = divmod(counts[lang], len(text))
    chosen = sorted(rng.choice(len(text), rest, replace=False))
    draws[lang] = text * repeats + [text[i] for i in chosen]
  return draws


def train_text_file() -> pathlib.Path:
  """`sampled_lines()`, one a line, language after language: what the corpus's vocabularies
  train on (written once per corpus and sampling)."""
  text_file = cache.cache_dir("parallel") / (
      f"train_text_{corpus.fingerprint()}_t{TEMPERATURE:g}_s{_SAMPLE_SEED}.txt"
  )
  if not text_file.exists():
    lines = [line for draw in sampled_lines().values() for line in draw]
    cache.atomic_write(text_file, ("\n".join(lines) + "\n").encode("utf-8"))
  return text_file


def parallel_vocabulary(
    vocab_size: int = VOCAB_SIZE, character_coverage: float = CHARACTER_COVERAGE
) -> seqio.SentencePieceVocabulary:
  """Unigram with byte fallback on the sampled train text; trained once, then cached.

  Tasks use the defaults; tools/vocab_coverage measures other settings of the same recipe.
  """
  return vocabularies.cached_sentencepiece_vocabulary(
      [train_text_file()],
      vocab_size,
      user_defined_symbols=SPECIAL_TOKENS,
      character_coverage=character_coverage,
  )
