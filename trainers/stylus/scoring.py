"""The composer's fit measure from a real model: the mean log-likelihood per token of a text
under the base model, or under the base with one adapter merged at its card's scale."""

import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np

from model_zoo import models
from model_zoo.errors import ConfigError
from model_zoo.layers import lora


class LikelihoodScore:
  """score(adapter name or None, text) -> nats per token (see module docstring); cached."""

  def __init__(
      self,
      model: models.BaseModel,
      base_params: Any,
      adapters: Mapping[str, tuple[Any, float]],
      encode: Callable[[str], Sequence[int]],
      length: int = 64,
  ):
    """`adapters`: name -> (lora_a / lora_b tree, scale alpha / rank)."""
    self.model, self.base_params, self.adapters = model, base_params, dict(adapters)
    self.encode, self.length = encode, length
    self._score = jax.jit(model.score_batch)

  @functools.lru_cache(maxsize=None)
  def _params(self, adapter: Optional[str]):
    if adapter is None:
      return self.base_params
    if adapter not in self.adapters:
      raise ConfigError(f"no adapter named {adapter!r}; the catalog has {sorted(self.adapters)}")
    tree, scale = self.adapters[adapter]
    return lora.merge_weighted(self.base_params, [(tree, scale)])

  @functools.lru_cache(maxsize=None)
  def __call__(self, adapter: Optional[str], text: str) -> float:
    ids = list(self.encode(text))[: self.length]
    if not ids:
      raise ConfigError("an empty keyword has no likelihood to compare")
    batch = self.model.scoring_batch([[]], [ids], 1, self.length)
    total = float(np.asarray(self._score(self._params(adapter), batch))[0])
    return total / len(ids)
