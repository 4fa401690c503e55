"""Several models in one decode loop: shallow fusion (e.g. an ASR model and a language model).

The fused step scores the next token by log p_primary + sum_i weight_i log p_i, with each
model keeping its own cache (and so its own positions) inside a tuple cache. The first input
and each row's room come from the primary model: every model continues after its own
prefill, so the others should hold the primary's prompt, or none when the primary has none.
Decoders renormalise the fused scores (log-softmax) before choosing or scoring tokens.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from model_zoo.decoding import base


def shallow_fusion(
    primary: base.DecodeInputs, others: Sequence[tuple[base.DecodeInputs, float]]
) -> base.DecodeInputs:
  """DecodeInputs whose step adds each other model's weighted log-probs to the primary's."""
  models = (primary,) + tuple(inputs for inputs, _ in others)
  for inputs in models[1:]:
    if inputs.length < primary.length:
      raise ValueError(
          f"Shallow fusion needs every cache to hold the primary's decode length "
          f"{primary.length}; one holds {inputs.length}."
      )
  weights = (1.0,) + tuple(weight for _, weight in others)

  def tokens_to_logits(token, caches):
    total, new_caches = 0.0, []
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
  )
