"""Beam search with T5X's length penalty, early stopping and a KV cache.

Each example keeps `beam_size` live hypotheses; every step expands them to the 2K best
(beam, token) candidates, moves those that end (EOS, or the example's room: L minus its
prompt) into a K-best finished set scored log p / ((5 + length) / 6) ** alpha, with length
the generated tokens, and keeps the K best that go on. An example stops when no live beam can
still beat its worst finished one, or when a state callback marks it done.

A live beam's further tokens each add at most `DecodeInputs.max_step_score` (b: 0 for
log-probabilities, as T5X assumes; a length bonus makes it positive), so the best it can still
finish with, having score s after n tokens, is max over the j = 1 .. room - n tokens it may
still add of (s + b j) / penalty(n + j) (`best_reachable`). That holds for either sign of the
total and any alpha: for 0 <= alpha <= 1 the maximum is at j = room - n (as s <= b n: every
token so far kept to the bound; with b = 0 it is T5X's s / penalty(room)), but for alpha > 1
a positive total can be best at a shorter length. Callbacks must not raise a step's score
above b.
"""

import dataclasses
from typing import Optional

import gin
import jax
import jax.numpy as jnp
from jax import lax

from model_zoo.decoding import base
from model_zoo.errors import ConfigError

NEG_INF = -1e30


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def best_reachable(
    score: jax.Array,
    generated: jax.Array,
    room: jax.Array,
    step_bound: float,
    alpha: float,
    length: int,
) -> jax.Array:
  """[B]: the best length-penalised score that a live hypothesis with `score` [B] (summed) after
  `generated` tokens ([B] or one for all) can still finish with, when each token it may add (1
  up to room [B] - generated, room <= `length`) scores at most `step_bound`; NEG_INF if it may
  add none. The maximum is over every length it may end at: which one is best depends on the
  sign of the total and on alpha.
  """
  more = jnp.arange(1, length + 1)
  final_length = jnp.asarray(generated)[..., None] + more
  finals = (score[:, None] + step_bound * more) / length_penalty(final_length, alpha)
  return jnp.max(jnp.where(final_length <= room[:, None], finals, NEG_INF), axis=1)


class _BeamState(base.DecodingState):
  """`sequences` [N, L] are the live beams, `done` [N] is per example (all its rows alike)."""

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
  """Returns the `beam_size` best finished sequences per example, best first, with scores.

  An example stops growing when no live beam can beat its worst finished one, when its room
  (`DecodeInputs.max_new_tokens`) runs out, or when a state callback marks all its rows done
  (marking only some of them has no effect). Stopped by a callback, it keeps its finished set
  as it is, or, if nothing finished yet, returns its live beams scored as though the length
  ran out there. The loop stops once every example has stopped.
  """

  beam_size: int = 4
  alpha: float = 0.6  # length penalty exponent; 0 ranks by total log-probability
  logit_callback: Optional[base.LogitCallback] = None
  state_callback: Optional[base.StateCallback] = None

  def __post_init__(self):
    if self.beam_size < 1:
      raise ConfigError(f"BeamSearch.beam_size={self.beam_size} must be >= 1.")

  @property
  def rows_per_example(self) -> int:
    return self.beam_size

  def __call__(self, inputs: base.DecodeInputs, *, rng: jax.Array, eos_id: int):
    del rng  # deterministic
    k = self.beam_size
    rows, length = inputs.first_token.shape[0], inputs.length
    batch = rows // k
    room = base.room(inputs).reshape(batch, k)[:, 0]  # [B]

    def settle(state: _BeamState, stopping: jax.Array, generated) -> _BeamState:
      """Examples that stop (`stopping` [B]) with nothing finished finish their live beams."""
      empty = jnp.logical_and(stopping, state.finished_scores[:, 0] <= NEG_INF / 2)
      live = state.live_scores > NEG_INF / 2
      scores = jnp.where(live, state.live_scores / length_penalty(generated, self.alpha), NEG_INF)
      sequences = jnp.where(live[..., None], state.sequences.reshape(batch, k, length), 0)
      return state.replace(
          finished_scores=jnp.where(empty[:, None], scores, state.finished_scores),
          finished_sequences=jnp.where(empty[:, None, None], sequences, state.finished_sequences),
      )

    def body(state: _BeamState) -> _BeamState:
      log_probs, cache = base.next_log_probs(inputs, state, self.logit_callback)
      vocab = log_probs.shape[-1]
      t = state.step
      stopped = state.done.reshape(batch, k)[:, 0]  # [B]: these keep their state as it is
      log_probs = log_probs.reshape(batch, k, vocab)
      candidates = (state.live_scores[:, :, None] + log_probs).reshape(batch, k * vocab)
      scores, flat = lax.top_k(candidates, 2 * k)
      beam, token = flat // vocab, (flat % vocab).astype(jnp.int32)
      old_sequences = state.sequences.reshape(batch, k, length)
      sequences = jnp.take_along_axis(old_sequences, beam[..., None], axis=1)
      sequences = lax.dynamic_update_slice(sequences, token[..., None], (0, 0, t))
      ends = jnp.logical_or(token == eos_id, (t + 1 >= room)[:, None])
      # Hypotheses that go on.
      live_scores, live_sequences, live_beam, live_token = _top(
          jnp.where(ends, NEG_INF, scores), k, sequences, beam, token
      )
      # Hypotheses that end here join the finished set.
      real = scores > NEG_INF / 2  # candidates grown from empty beam slots stay empty
      ended = jnp.where(
          jnp.logical_and(ends, real), scores / length_penalty(t + 1, self.alpha), NEG_INF
      )
      finished_scores, finished_sequences = _top(
          jnp.concatenate([state.finished_scores, ended], axis=1),
          k,
          jnp.concatenate([state.finished_sequences, sequences], axis=1),
      )
      keep = stopped[:, None]
      live_scores = jnp.where(keep, state.live_scores, live_scores)
      live_sequences = jnp.where(keep[..., None], old_sequences, live_sequences)
      live_beam = jnp.where(keep, jnp.arange(k), live_beam)
      live_token = jnp.where(keep, 0, live_token)
      finished_scores = jnp.where(keep, state.finished_scores, finished_scores)
      finished_sequences = jnp.where(keep[..., None], state.finished_sequences, finished_sequences)
      # An example is done once no live beam can still beat its worst finished one (the best
      # live beam can reach the most: best_reachable grows with the score).
      best_live = live_scores[:, 0]
      best_final = best_reachable(best_live, t + 1, room, inputs.max_step_score, self.alpha, length)
      can_improve = jnp.logical_and(best_final > finished_scores[:, -1], best_live > NEG_INF / 2)
      done = jnp.logical_or(stopped, jnp.logical_not(can_improve))
      rows_index = (jnp.arange(batch)[:, None] * k + live_beam).reshape(-1)
      state = state.replace(
          step=t + 1,
          sequences=live_sequences.reshape(rows, length),
          previous_token=live_token.reshape(rows),
          done=jnp.repeat(done, k),
          cache=inputs.reorder_cache(cache, rows_index),
          live_scores=live_scores,
          finished_sequences=finished_sequences,
          finished_scores=finished_scores,
      )
      if self.state_callback is not None:
        state = self.state_callback(state)
        marked = jnp.all(state.done.reshape(batch, k), axis=1)
        state = settle(state, jnp.logical_and(marked, jnp.logical_not(done)), t + 1)
        state = state.replace(done=jnp.repeat(jnp.logical_or(done, marked), k))
      return state

    def running(state: _BeamState) -> jax.Array:
      return jnp.logical_and(state.step < length, jnp.logical_not(jnp.all(state.done)))

    first_beam_only = jnp.where(jnp.arange(k) == 0, 0.0, NEG_INF)
    state = _BeamState(
        step=jnp.array(0),
        sequences=jnp.zeros((rows, length), jnp.int32),
        previous_token=inputs.first_token.astype(jnp.int32),
        done=jnp.repeat(room <= 0, k),
        cache=inputs.cache,
        live_scores=jnp.broadcast_to(first_beam_only, (batch, k)),
        finished_sequences=jnp.zeros((batch, k, length), jnp.int32),
        finished_scores=jnp.full((batch, k), NEG_INF),
    )
    state = settle(state, room <= 0, 0)  # no room: the empty output
    state = lax.while_loop(running, body, state)
    return state.finished_sequences, state.finished_scores
