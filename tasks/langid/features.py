"""fastText-style character n-gram features, hashed into a fixed number of buckets.

A text is lowercased (after NFC, so a composed and a decomposed "é" are one character)
and split at whitespace; each word is wrapped in boundary markers, "<word>", so that
prefixes and suffixes ("<the", "ung>") get their own n-grams. Every n-gram of 1 to
`max_order` characters of the wrapped word, except a lone marker, is hashed with CRC-32
(stable across processes and machines, unlike Python's salted `hash`) into
`num_buckets`. Pure Python/NumPy, so the ids can be checked by hand; the model averages
the embeddings of a text's ids.
"""

import functools
import unicodedata
import zlib
from typing import Sequence

import numpy as np

BEGIN, END = "<", ">"


def normalize(text: str) -> str:
  return unicodedata.normalize("NFC", text).lower()


def word_ngrams(word: str, max_order: int) -> list[str]:
  """The n-grams (n = 1..max_order) of "<word>", shortest first, left to right."""
  wrapped = f"{BEGIN}{word}{END}"
  return [
      wrapped[i : i + n]
      for n in range(1, max_order + 1)
      for i in range(len(wrapped) - n + 1)
      if n > 1 or wrapped[i] not in (BEGIN, END)
  ]


def char_ngrams(text: str, max_order: int) -> list[str]:
  """Every word's n-grams, in word order."""
  return [gram for word in normalize(text).split() for gram in word_ngrams(word, max_order)]


def bucket(gram: str, num_buckets: int) -> int:
  return zlib.crc32(gram.encode("utf-8")) % num_buckets


@functools.lru_cache(maxsize=1 << 18)
def _word_ids(word: str, max_order: int, num_buckets: int) -> tuple[int, ...]:
  """Words repeat a lot in a corpus, so hashing each distinct word once makes featurising fast."""
  return tuple(bucket(gram, num_buckets) for gram in word_ngrams(word, max_order))


def ngram_ids(text: str, max_order: int, num_buckets: int) -> np.ndarray:
  """The bucket ids of `char_ngrams(text, max_order)`, as int32."""
  ids = [i for word in normalize(text).split() for i in _word_ids(word, max_order, num_buckets)]
  return np.asarray(ids, np.int32)


def pack(id_lists: Sequence[np.ndarray], num_texts: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids, segments): the texts' ids end to end, and which text each id belongs to.

  Shapes are padded so that jit compiles few programs: `num_texts` (>= len(id_lists)) rows
  and a length rounded up to a power of two. Padding ids belong to segment `num_texts`,
  which the model drops.
  """
  if len(id_lists) > num_texts:
    raise ValueError(f"pack: {len(id_lists)} texts do not fit in num_texts={num_texts}")
  total = sum(len(ids) for ids in id_lists)
  size = max(1024, 1 << (total - 1).bit_length())
  ids = np.zeros(size, np.int32)
  segments = np.full(size, num_texts, np.int32)
  if total:
    ids[:total] = np.concatenate(id_lists)
    segments[:total] = np.repeat(np.arange(len(id_lists)), [len(x) for x in id_lists])
  return ids, segments
