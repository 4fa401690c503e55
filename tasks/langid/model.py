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

PREDICT_BATCH = 512  # texts per jitted call; the last chunk is padded to it


@dataclasses.dataclass(frozen=True)
class LangIdConfig:
  """Hyper-parameters of the model and its training; all of them key the cached params."""

  # Measured on 2 CPU cores (2^17 buckets x 32 dims, 3 epochs: ~8 s, 94.4% held-out
  # accuracy): 2^18 buckets or 64 dims cost 2-5x the time for under 0.1 point more.
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
  return [features.ngram_ids(t, config.max_order, config.num_buckets) for t in texts]


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
    for start in range(0, len(texts), PREDICT_BATCH):
      chunk = texts[start : start + PREDICT_BATCH]
      ids, segments = features.pack(featurize(chunk, self.config), PREDICT_BATCH)
      probs = _probabilities(module, self.params, ids, segments, PREDICT_BATCH)
      out[start : start + len(chunk)] = np.asarray(probs)[: len(chunk)]
    return out

  def predict(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(language codes, confidences): the most probable language and its probability."""
    probs = self.probabilities(texts)
    best = probs.argmax(axis=-1)
    return [corpus.LANGUAGES[i] for i in best], probs[np.arange(len(texts)), best]
