"""Greedy decoding with a KV cache, compiled as one `lax.while_loop`.

A decoder sees a model only through `tokens_to_logits(token [batch, 1], cache) ->
(logits [batch, vocab], cache)`, so one loop serves decoder-only and encoder-decoder models.
"""
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

TokensToLogits = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


def greedy_decode(tokens_to_logits: TokensToLogits, cache: Any, forced_tokens: jax.Array,
                  num_forced: jax.Array, *, eos_id: int) -> tuple[jax.Array, jax.Array]:
  """Decodes `forced_tokens.shape[1]` steps; the first `num_forced[b]` tokens of row b are given.

  The model input at step t is the token at t-1 (0, the BOS/pad id, at t=0). Returns the
  sequences [batch, length] (prompt included, 0 after EOS) and the log-probability of the
  generated part of each row.
  """
  batch, length = forced_tokens.shape

  def step(state):
    t, prev, cache, seqs, done, scores = state
    logits, cache = tokens_to_logits(prev[:, None], cache)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    is_forced = t < num_forced
    token = jnp.where(is_forced, forced_tokens[:, t], jnp.argmax(log_probs, axis=-1))
    token = jnp.where(done, 0, token).astype(jnp.int32)
    generated = jnp.logical_not(jnp.logical_or(is_forced, done))
    scores = scores + jnp.where(generated, jnp.take_along_axis(log_probs, token[:, None], -1)[:, 0], 0.0)
    done = jnp.logical_or(done, jnp.logical_and(generated, token == eos_id))
    seqs = lax.dynamic_update_slice(seqs, token[:, None], (0, t))
    return t + 1, token, cache, seqs, done, scores

  def not_finished(state):
    t, _, _, _, done, _ = state
    return jnp.logical_and(t < length, jnp.logical_not(jnp.all(done)))

  init = (jnp.array(0), jnp.zeros((batch,), jnp.int32), cache, jnp.zeros((batch, length), jnp.int32),
          jnp.zeros((batch,), bool), jnp.zeros((batch,), jnp.float32))
  _, _, _, seqs, _, scores = lax.while_loop(not_finished, step, init)
  return seqs, scores


def strip_prompt(sequences: jax.Array, num_forced: jax.Array) -> jax.Array:
  """Shifts each row left by its prompt length, so the continuation starts at column 0."""
  length = sequences.shape[1]
  idx = jnp.arange(length)[None, :] + num_forced[:, None]
  shifted = jnp.take_along_axis(sequences, jnp.minimum(idx, length - 1), axis=1)
  return jnp.where(idx < length, shifted, 0)
