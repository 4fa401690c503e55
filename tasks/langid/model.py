"""The LangID classifier: mean of hashed character n-gram embeddings -> linear -> softmax.

A fastText-style bag of n-grams (Joulin et al., 2017): cheap to train on CPUs and strong
on short text, which is what UI strings and filtered web lines are.
"""

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from model_zoo.errors import ConfigError
from tasks.langid import features
from tasks.parallel import corpus

PREDICT_BATCH = 512  # texts per jitted call at most; fewer are padded to it
# N-gram ids per jitted call: texts are grouped up to this many, so that almost every call
# has one shape (one compiled program); a longer text alone gets the next power of two.
PREDICT_IDS = 1 << 15


@dataclasses.dataclass(frozen=True)
class LangIdConfig:
  """Hyper-parameters of the model and its training; all of them key the cached params."""

  # Measured on 2 busy CPU cores over 93 languages (268k examples; 2^17 buckets x 32 dims,
  # 3 epochs): 36 s, 92.4% held-out accuracy; 2^18 buckets: 92.6% for ~4x the time. On
  # the first 20 languages, 2^18 buckets or 64 dims cost 2-5x for under 0.1 point more.
  num_buckets: int = 1 << 17
  embed_dim: int = 32
  max_order: int = 4
  epochs: int = 3
  batch_size: int = 1024
  learning_rate: float = 0.02
  seed: int = 0

  def __post_init__(self):
    for name in ("num_buckets", "embed_dim", "max_order", "epochs", "batch_size"):
      if getattr(self, name) < 1:
        raise ConfigError(f"LangIdConfig.{name} must be >= 1; got {getattr(self, name)}")
    if not self.learning_rate > 0:
      raise ConfigError(f"LangIdConfig.learning_rate must be > 0; got {self.learning_rate}")


class NgramClassifier(nn.Module):
  """Logits over `num_classes` for `num_texts` texts given as packed (ids, segments)."""

  num_buckets: int
  embed_dim: int
  num_classes: int

  @nn.compact
  def __call__(self, ids: jax.Array, segments: jax.Array, num_texts: int) -> jax.Array:
    embedded = nn.Embed(
        self.num_buckets, self.embed_dim, embedding_init=nn.initializers.normal(0.1)
    )(ids)
    # Segment `num_texts` holds the padding; it is computed and dropped.
    sums = jax.ops.segment_sum(embedded, segments, num_segments=num_texts + 1)[:num_texts]
    counts = jax.ops.segment_sum(jnp.ones_like(ids, jnp.float32), segments, num_texts + 1)
    means = sums / jnp.maximum(counts[:num_texts], 1.0)[:, None]
    return nn.Dense(self.num_classes)(means)


def classifier(config: LangIdConfig) -> NgramClassifier:
  return NgramClassifier(config.num_buckets, config.embed_dim, len(corpus.LANGUAGES))


def featurize(texts: Sequence[str], config: LangIdConfig) -> list[np.ndarray]:
  """Each text's n-gram ids, hashed 8192 texts at a time (bounded memory for a corpus)."""
  return [
      ids
      for start in range(0, len(texts), 8192)
      for ids in features.batch_ngram_ids(
          texts[start : start + 8192], config.max_order, config.num_buckets
      )
  ]


def _calls(id_lists: Sequence[np.ndarray]) -> list[tuple[int, int]]:
  """(start, stop) of consecutive texts for each call: <= PREDICT_BATCH texts and
  <= PREDICT_IDS ids, or a single text."""
  calls, start, total = [], 0, 0
  for i, ids in enumerate(id_lists):
    if i > start and (i - start == PREDICT_BATCH or total + len(ids) > PREDICT_IDS):
      calls.append((start, i))
      start, total = i, 0
    total += len(ids)
  return calls + [(start, len(id_lists))] if len(id_lists) > start else calls


@functools.partial(jax.jit, static_argnames=("module", "num_texts"))
def _probabilities(module, params, ids, segments, num_texts):
  return jax.nn.softmax(module.apply({"params": params}, ids, segments, num_texts), axis=-1)


@dataclasses.dataclass(frozen=True)
class LangIdModel:
  """Trained parameters and the config they were trained with; answers in `corpus.LANGUAGES`."""

  config: LangIdConfig
  params: Any

  def probabilities(self, texts: Sequence[str]) -> np.ndarray:
    """[len(texts), len(corpus.LANGUAGES)] softmax probabilities."""
    module = classifier(self.config)
    out = np.zeros((len(texts), len(corpus.LANGUAGES)), np.float32)
    id_lists = featurize(texts, self.config)
    calls = _calls(id_lists)
    # Dispatched asynchronously: the next call's packing overlaps this one's computing.
    results = [
        _probabilities(
            module,
            self.params,
            *features.pack(id_lists[a:b], PREDICT_BATCH, PREDICT_IDS),
            PREDICT_BATCH,
        )
        for a, b in calls
    ]
    for (start, stop), probs in zip(calls, results):
      out[start:stop] = np.asarray(probs)[: stop - start]
    return out

  def predict(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(language codes, confidences): the most probable language and its probability."""
    probs = self.probabilities(texts)
    best = probs.argmax(axis=-1)
    return [corpus.LANGUAGES[i] for i in best], probs[np.arange(len(texts)), best]
