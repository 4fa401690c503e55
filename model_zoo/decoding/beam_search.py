"""Beam search with T5X's length penalty, early stopping and a KV cache.

Each example keeps `beam_size` live hypotheses; every step expands them to the 2K best
(beam, token) candidates, moves those that end (EOS, or the maximum length) into a
K-best finished set scored log p / ((5 + length) / 6) ** alpha, and keeps the K best that
go on. It stops when no live beam can still beat the worst finished one (assuming, as
T5X does, alpha >= 0 and callbacks that never raise a log-probability above 0).
"""

import dataclasses
from typing import Optional

import gin
import jax
import jax.numpy as jnp
from jax import lax

from model_zoo.decoding import base

NEG_INF = -1e30


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
  return ((5.0 + length.astype(jnp.float32)) / 6.0) ** alpha


class _BeamState(base.DecodingState):
  live_scores: jax.Array = None  # [B, K] sum of log-probs of the generated tokens
  finished_sequences: jax.Array = None  # [B, K, L]
  finished_scores: jax.Array = None  # [B, K] length-penalised; NEG_INF where empty


def _top(scores: jax.Array, k: int, *values: jax.Array):
  top_scores, idx = lax.top_k(scores, k)
  return (top_scores,) + tuple(
      jnp.take_along_axis(v, idx.reshape(idx.shape + (1,) * (v.ndim - 2)), axis=1) for v in values
  )


@gin.configurable
@dataclasses.dataclass(frozen=True)
class BeamSearch:
  """Returns the `beam_size` best finished sequences per example, best first, with scores."""

  beam_size: int = 4
  alpha: float = 0.6  # length penalty exponent; 0 ranks by total log-probability
  logit_callback: Optional[base.LogitCallback] = None
  state_callback: Optional[base.StateCallback] = None

  def __post_init__(self):
    if self.beam_size < 1:
      raise ValueError(f"BeamSearch.beam_size={self.beam_size} must be >= 1.")

  @property
  def rows_per_example(self) -> int:
    return self.beam_size

  def __call__(self, inputs: base.DecodeInputs, *, rng: jax.Array, eos_id: int):
    del rng  # deterministic
    k = self.beam_size
    rows, length = inputs.forced_tokens.shape
    batch = rows // k
    forced_tokens = inputs.forced_tokens.reshape(batch, k, length)[:, 0]
    num_forced = inputs.num_forced.reshape(batch, k)[:, 0]
    max_penalty = length_penalty(jnp.maximum(length - num_forced, 1), self.alpha)

    def body(state: _BeamState) -> _BeamState:
      log_probs, cache = base.next_log_probs(inputs, state, self.logit_callback)
      vocab = log_probs.shape[-1]
      t = state.step
      forced = t < num_forced  # [B]
      only_forced = jnp.where(
          jnp.arange(vocab) == forced_tokens[:, t, None], 0.0, NEG_INF
      )  # [B, V]
      log_probs = log_probs.reshape(batch, k, vocab)
      log_probs = jnp.where(forced[:, None, None], only_forced[:, None, :], log_probs)
      candidates = (state.live_scores[:, :, None] + log_probs).reshape(batch, k * vocab)
      scores, flat = lax.top_k(candidates, 2 * k)
      beam, token = flat // vocab, (flat % vocab).astype(jnp.int32)
      sequences = jnp.take_along_axis(
          state.sequences.reshape(batch, k, length), beam[..., None], axis=1
      )
      sequences = lax.dynamic_update_slice(sequences, token[..., None], (0, 0, t))
      ends = jnp.logical_or(
          jnp.logical_and(token == eos_id, jnp.logical_not(forced)[:, None]), t == length - 1
      )
      # Hypotheses that go on.
      live_scores, live_sequences, live_beam, live_token = _top(
          jnp.where(ends, NEG_INF, scores), k, sequences, beam, token
      )
      rows_index = (jnp.arange(batch)[:, None] * k + live_beam).reshape(-1)
      # Hypotheses that end here join the finished set.
      generated = (t + 1 - num_forced)[:, None]
      real = scores > NEG_INF / 2  # candidates grown from empty beam slots stay empty
      ended = jnp.where(
          jnp.logical_and(ends, real), scores / length_penalty(generated, self.alpha), NEG_INF
      )
      finished_scores, finished_sequences = _top(
          jnp.concatenate([state.finished_scores, ended], axis=1),
          k,
          jnp.concatenate([state.finished_sequences, sequences], axis=1),
      )
      state = state.replace(
          step=t + 1,
          sequences=live_sequences.reshape(rows, length),
          previous_token=live_token.reshape(rows),
          cache=inputs.reorder_cache(cache, rows_index),
          live_scores=live_scores,
          finished_sequences=finished_sequences,
          finished_scores=finished_scores,
      )
      if self.state_callback is not None:
        state = self.state_callback(state)
      return state

    def running(state: _BeamState) -> jax.Array:
      best_live = state.live_scores[:, 0] / max_penalty  # the best any live beam could still reach
      worst_finished = state.finished_scores[:, -1]
      can_improve = jnp.logical_and(
          best_live > worst_finished, state.live_scores[:, 0] > NEG_INF / 2
      )
      return jnp.logical_and(state.step < length, jnp.any(can_improve))

    first_beam_only = jnp.where(jnp.arange(k) == 0, 0.0, NEG_INF)
    state = _BeamState(
        step=jnp.array(0),
        sequences=jnp.zeros((rows, length), jnp.int32),
        previous_token=jnp.zeros((rows,), jnp.int32),
        done=jnp.zeros((rows,), bool),
        cache=inputs.cache,
        live_scores=jnp.broadcast_to(first_beam_only, (batch, k)),
        finished_sequences=jnp.zeros((batch, k, length), jnp.int32),
        finished_scores=jnp.full((batch, k), NEG_INF),
    )
    state = lax.while_loop(running, body, state)
    return state.finished_sequences, state.finished_scores
