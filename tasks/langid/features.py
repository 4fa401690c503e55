"""fastText-style character n-gram features, hashed into a fixed number of buckets.

A text is lowercased (after NFC, so a composed and a decomposed "é" are one character)
and split at whitespace; each word is wrapped in boundary markers, "<word>", so that
prefixes and suffixes ("<the", "ung>") get their own n-grams. Every n-gram of 1 to
`max_order` characters of a wrapped word, except a lone marker, is hashed into
`num_buckets`: a polynomial over its code points (mod 2^64, so stable across processes
and machines, unlike Python's salted `hash`), mixed by a multiply-shift. The hash is
computed for a whole batch of texts at once in NumPy: LangID filters run over whole
corpora, and hashing gram by gram in Python held prediction to ~13k sentences/s on 2 CPU
cores, whatever the model. `char_ngrams` and `bucket` are the one-text reference the
tests check the batch ids against; the model averages the embeddings of a text's ids.
"""

import unicodedata
from typing import Sequence

import numpy as np

BEGIN, END = "<", ">"
VERSION = 2  # of the hashing; part of the LangID cache key (1 was CRC-32 per gram)
_BASE = np.uint64(1_000_003)  # the polynomial's base: a prime above every code point
_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd: Knuth's multiplicative hash
_SHIFT = np.uint64(32)


def normalize(text: str) -> str:
  return unicodedata.normalize("NFC", text).lower()


def char_ngrams(text: str, max_order: int) -> list[str]:
  """The n-grams (n = 1..max_order) of the text's wrapped words, shortest first, then left to
  right through the text, lone markers left out: the order of `ngram_ids`."""
  wrapped = [f"{BEGIN}{word}{END}" for word in normalize(text).split()]
  return [
      word[i : i + n]
      for n in range(1, max_order + 1)
      for word in wrapped
      for i in range(len(word) - n + 1)
      if n > 1 or word[i] not in (BEGIN, END)
  ]


def bucket(gram: str, num_buckets: int) -> int:
  """`gram`'s bucket, in plain Python: h = sum(c_j * B^(n-1-j)) mod 2^64 over its code
  points, then ((h xor n) * MIX mod 2^64) >> 32, mod num_buckets."""
  h = 0
  for c in gram:
    h = (h * int(_BASE) + ord(c)) % 2**64
  return (((h ^ len(gram)) * int(_MIX)) % 2**64 >> 32) % num_buckets


def batch_ngram_ids(texts: Sequence[str], max_order: int, num_buckets: int) -> list[np.ndarray]:
  """`ngram_ids` of every text, computed together: the n-grams of all texts' wrapped words
  are hashed by position in one array of code points."""
  words = [normalize(text).split() for text in texts]
  wrapped = "".join(f"{BEGIN}{word}{END}" for text_words in words for word in text_words)
  points = np.frombuffer(wrapped.encode("utf-32-le"), np.uint32).astype(np.uint64)
  word_of = np.repeat(
      np.arange(sum(map(len, words))), [len(w) + 2 for text_words in words for w in text_words]
  )
  text_of_word = np.repeat(np.arange(len(texts)), list(map(len, words)))
  ids, owners = [], []
  hashes = np.zeros(len(points), np.uint64)
  with np.errstate(over="ignore"):  # the polynomial and the mix wrap mod 2^64 on purpose
    for n in range(1, max_order + 1):
      # hashes[i]: the n-gram starting at position i (positions whose n-gram fits)
      hashes = hashes[: max(len(points) - n + 1, 0)] * _BASE + points[n - 1 :]
      valid = word_of[: len(hashes)] == word_of[n - 1 :]  # inside one wrapped word
      if n == 1:
        valid &= (points != ord(BEGIN)) & (points != ord(END))
      mixed = ((hashes ^ np.uint64(n)) * _MIX) >> _SHIFT
      ids.append((mixed[valid] % np.uint64(num_buckets)).astype(np.int32))
      owners.append(text_of_word[word_of[: len(hashes)][valid]])
  ids, owners = np.concatenate(ids), np.concatenate(owners)
  order = np.argsort(owners, kind="stable")  # by text, keeping (n, position) order within
  return np.split(ids[order], np.cumsum(np.bincount(owners, minlength=len(texts)))[:-1])


def ngram_ids(text: str, max_order: int, num_buckets: int) -> np.ndarray:
  """The bucket ids of `char_ngrams(text, max_order)`, as int32."""
  return batch_ngram_ids([text], max_order, num_buckets)[0]


def pack(
    id_lists: Sequence[np.ndarray], num_texts: int, min_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
  """(ids, segments): the texts' ids end to end, and which text each id belongs to.

  Shapes are padded so that jit compiles few programs: `num_texts` (>= len(id_lists)) rows
  and a length of `min_size`, or the next power of two above it that holds the ids.
  Padding ids belong to segment `num_texts`, which the model drops.
  """
  if len(id_lists) > num_texts:
    raise ValueError(f"pack: {len(id_lists)} texts do not fit in num_texts={num_texts}")
  total = sum(len(ids) for ids in id_lists)
  size = max(min_size, 1 << (total - 1).bit_length())
  ids = np.zeros(size, np.int32)
  segments = np.full(size, num_texts, np.int32)
  if total:
    ids[:total] = np.concatenate(id_lists)
    segments[:total] = np.repeat(np.arange(len(id_lists)), [len(x) for x in id_lists])
  return ids, segments
