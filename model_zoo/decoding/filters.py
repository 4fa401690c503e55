"""Restricting a next-token distribution: temperature, then top-k, then top-p (nucleus).

Each filter renormalises what it keeps, so top-p acts on the top-k distribution.
Arrays are [rows, vocab].
"""

import jax
import jax.numpy as jnp

NEG_INF = -1e30


def top_k_mask(log_probs: jax.Array, k: int) -> jax.Array:
  """Keeps the k most likely tokens per row (ties at the k-th value are kept)."""
  if k <= 0 or k >= log_probs.shape[-1]:
    return log_probs
  kth = jax.lax.top_k(log_probs, k)[0][..., -1:]
  return jnp.where(log_probs >= kth, log_probs, NEG_INF)


def top_p_mask(log_probs: jax.Array, p: float) -> jax.Array:
  """Keeps the smallest set of most likely tokens whose probability reaches p (the nucleus).

  The most likely token is always kept; a token is kept iff the probability mass strictly
  before it (in descending order) is below p.
  """
  if p >= 1.0:
    return log_probs
  order = jnp.argsort(-log_probs, axis=-1)
  sorted_lp = jnp.take_along_axis(log_probs, order, axis=-1)
  mass_before = jnp.cumsum(jnp.exp(sorted_lp), axis=-1) - jnp.exp(sorted_lp)
  keep_sorted = mass_before < p
  keep = (
      jnp.zeros_like(keep_sorted)
      .at[jnp.arange(log_probs.shape[0])[:, None], order]
      .set(keep_sorted)
  )
  return jnp.where(keep, log_probs, NEG_INF)


def sampling_distribution(
    log_probs: jax.Array, *, temperature: float, top_k: int, top_p: float
) -> jax.Array:
  """Logits that `jax.random.categorical` samples the filtered, tempered distribution from."""
  tempered = jax.nn.log_softmax(log_probs / temperature, axis=-1)
  top_k_renormalised = jax.nn.log_softmax(top_k_mask(tempered, top_k), axis=-1)
  return top_p_mask(top_k_renormalised, top_p)
