"""One SentencePiece vocabulary for every task over the parallel corpus (MT, MASS, Flan, LangID).

Trained on every language's train text, so no language is split into bytes; each
`<2xx>` target-language tag, the MASS mask and the line break are user-defined symbols,
one id each.
"""

import pathlib

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio

from tasks import cache, vocabularies
from tasks.parallel import corpus

VOCAB_SIZE = 8192
MASK_TOKEN = "[MASK]"
# A piece of its own: SentencePiece's normaliser would turn line breaks into spaces, and
# Flan prompts are laid out in lines (answer options, blank lines between exemplars).
NEWLINE = "\n"


def language_tag(lang: str) -> str:
  """The target-language token that tells a multilingual model what to produce, e.g. `<2de>`."""
  corpus.check_language(lang)
  return f"<2{lang}>"


SPECIAL_TOKENS = tuple(language_tag(lang) for lang in corpus.LANGUAGES) + (MASK_TOKEN, NEWLINE)


def train_text_file() -> pathlib.Path:
  """Every language's train text, one line each: what the corpus's vocabularies train on."""
  text_file = cache.cache_dir("parallel") / f"train_text_{corpus.fingerprint()}.txt"
  if not text_file.exists():
    lines = [line for lang in corpus.LANGUAGES for line in corpus.monolingual(lang, "train")]
    cache.atomic_write(text_file, ("\n".join(lines) + "\n").encode("utf-8"))
  return text_file


def parallel_vocabulary() -> seqio.SentencePieceVocabulary:
  """Unigram with byte fallback on all languages' train text; trained once, then cached."""
  return vocabularies.cached_sentencepiece_vocabulary(
      [train_text_file()], VOCAB_SIZE, user_defined_symbols=SPECIAL_TOKENS
  )
