"""Several models in one decode loop: shallow fusion (e.g. an ASR model and a language model).

The fused step scores the next token by log p_primary + sum_i weight_i log p_i, with each
model keeping its own cache (and so its own positions) inside a tuple cache. The first input
and each row's room come from the primary model: every model continues after its own
prefill, so the others should hold the primary's prompt, or none when the primary has none.

By default decoders renormalise the fused scores (log-softmax) before choosing or scoring
tokens. With `renormalize=False` they add them as they are, plus `length_bonus` per token:
a hypothesis y then scores exactly log p_ASR(y|x) + lambda log p_LM(y) + beta |y| (Hu et al.
2023), EOS included, which renormalising would change (and with it the ranking of beams).
"""

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from model_zoo.decoding import base
from model_zoo.errors import ConfigError


def shallow_fusion(
    primary: base.DecodeInputs,
    others: Sequence[tuple[base.DecodeInputs, float]],
    *,
    length_bonus: float = 0.0,
    renormalize: bool = True,
) -> base.DecodeInputs:
  """DecodeInputs whose step adds each other model's weighted log-probs to the primary's.

  Weights (lambda) must be >= 0. `length_bonus` (beta, added to every token's score) needs
  `renormalize=False`: a log-softmax would take the same amount off every token again.
  """
  for number, (_, weight) in enumerate(others):
    if not weight >= 0:
      raise ConfigError(
          f"shallow_fusion: the weight of other model {number} is {weight}; it must be >= 0 "
          "(lambda in log p_primary + lambda log p_LM)."
      )
  if not math.isfinite(length_bonus):
    raise ConfigError(f"shallow_fusion: length_bonus={length_bonus} must be a finite number.")
  if length_bonus and renormalize:
    raise ConfigError(
        f"shallow_fusion: length_bonus={length_bonus} needs renormalize=False: a log-softmax "
        "over the fused scores cancels a bonus that every token gets alike."
    )
  models = (primary,) + tuple(inputs for inputs, _ in others)
  if not all(inputs.renormalize for inputs in models):
    raise ValueError(
        "Shallow fusion log-softmaxes each model's logits, but one model's step already gives "
        "final scores (renormalize=False): fuse all the models in one shallow_fusion call."
    )
  for inputs in models[1:]:
    if inputs.length < primary.length:
      raise ValueError(
          f"Shallow fusion needs every cache to hold the primary's decode length "
          f"{primary.length}; one holds {inputs.length}."
      )
  weights = (1.0,) + tuple(weight for _, weight in others)

  def tokens_to_logits(token, caches):
    total, new_caches = length_bonus, []
    for inputs, weight, cache in zip(models, weights, caches):
      logits, cache = inputs.tokens_to_logits(token, cache)
      if isinstance(total, jax.Array) and logits.shape != total.shape:
        raise ValueError(
            f"Shallow fusion needs one vocabulary: logits {logits.shape} vs {total.shape}."
        )
      total = total + weight * jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
      new_caches.append(cache)
    return total, tuple(new_caches)

  def reorder_cache(caches, rows):
    return tuple(inputs.reorder_cache(cache, rows) for inputs, cache in zip(models, caches))

  return base.DecodeInputs(
      tokens_to_logits=tokens_to_logits,
      cache=tuple(m.cache for m in models),
      first_token=primary.first_token,
      max_new_tokens=primary.max_new_tokens,
      length=primary.length,
      reorder_cache=reorder_cache,
      renormalize=renormalize,
      # Each log-softmax is <= 0 and each weight >= 0: a step scores at most the bonus.
      max_step_score=length_bonus,
  )
