"""The pre-training documents: every language's catalog messages, a few consecutive ones each.

Catalog messages are short (~30 characters), so one alone gives a model little context;
MESSAGES_PER_DOCUMENT consecutive messages of one language (in key order, so mostly of one
catalog and topic), one per line, make a document of ~130 tokens (validation: mean 129,
99% within 251; ~60 when the corpus had 20 languages). Documents of all the
parallel corpus' languages are interleaved in a fixed order, so that any run of them mixes
the languages. The split is the corpus' own: no validation message is in a train document,
and the Flan and MT tasks' held-out examples come from the same held-out messages.
"""

import functools

import numpy as np

from tasks.parallel import corpus

MESSAGES_PER_DOCUMENT = 8
_INTERLEAVE_SEED = 0


def language_documents(lang: str, split: str) -> list[str]:
  """One language's documents of `split`: MESSAGES_PER_DOCUMENT consecutive messages each."""
  lines = corpus.monolingual(lang, split)
  return [
      "\n".join(lines[i : i + MESSAGES_PER_DOCUMENT])
      for i in range(0, len(lines), MESSAGES_PER_DOCUMENT)
  ]


@functools.cache
def documents(split: str) -> tuple[str, ...]:
  """The documents of `split` ("train" or "validation"), languages interleaved."""
  docs = []
  for lang in corpus.LANGUAGES:
    docs += language_documents(lang, split)
  order = np.random.default_rng(_INTERLEAVE_SEED).permutation(len(docs))
  return tuple(docs[i] for i in order)
