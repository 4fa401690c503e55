"""Greedy decoding and temperature sampling (top-k, top-p), one compiled `lax.while_loop`."""

import dataclasses
from typing import Any, Callable, Optional

import gin
import jax
import jax.numpy as jnp
from jax import lax

from model_zoo.decoding import base, filters
from model_zoo.errors import ConfigError

# (state after a step, generated log-probs [N], which rows generated this step) -> the same two
AfterStep = Callable[
    [base.DecodingState, jax.Array, jax.Array], tuple[base.DecodingState, jax.Array]
]


Carry = tuple[base.DecodingState, jax.Array, jax.Array]  # (state, generated log-probs [N], rng)


@dataclasses.dataclass(frozen=True)
class DecodeLoop:
  """The loop of `decode_loop` in its parts: the carry it starts from, one step, and whether
  to go on. `decode_loop` runs them in one `lax.while_loop`; a driver whose model step cannot
  sit inside one compiled loop (pipeline stages on devices of their own, trainers/serving)
  runs the very same steps one at a time."""

  inputs: base.DecodeInputs
  choose: Callable[[jax.Array, jax.Array], jax.Array]
  eos_id: int
  logit_callback: Optional[base.LogitCallback] = None
  state_callback: Optional[base.StateCallback] = None
  after_step: Optional[AfterStep] = None

  def start(self, rng: jax.Array, extra: Any = None) -> Carry:
    rows, length = self.inputs.first_token.shape[0], self.inputs.length
    state = base.DecodingState(
        step=jnp.array(0),
        sequences=jnp.zeros((rows, length), jnp.int32),
        previous_token=self.inputs.first_token.astype(jnp.int32),
        done=base.room(self.inputs) <= 0,
        cache=self.inputs.cache,
        extra=extra,
    )
    return state, jnp.zeros((rows,), jnp.float32), rng

  def step(self, carry: Carry) -> Carry:
    state, scores, rng = carry
    rng, step_rng = jax.random.split(rng)
    log_probs, cache = base.next_log_probs(self.inputs, state, self.logit_callback)
    t = state.step
    generated = jnp.logical_not(state.done)
    token = jnp.where(generated, self.choose(log_probs, step_rng), 0).astype(jnp.int32)
    token_log_prob = jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]
    scores = scores + jnp.where(generated, token_log_prob, 0.0)
    ended = jnp.logical_or(token == self.eos_id, t + 1 >= base.room(self.inputs))
    done = jnp.logical_or(state.done, jnp.logical_and(generated, ended))
    state = state.replace(
        step=t + 1,
        sequences=lax.dynamic_update_slice(state.sequences, token[:, None], (0, t)),
        previous_token=token,
        cache=cache,
        done=done,
    )
    if self.state_callback is not None:
      state = self.state_callback(state)
      state = state.replace(done=jnp.logical_or(state.done, done))
    if self.after_step is not None:
      state, scores = self.after_step(state, scores, generated)
    return state, scores, rng

  def running(self, carry: Carry) -> jax.Array:
    state = carry[0]
    return jnp.logical_and(state.step < self.inputs.length, jnp.logical_not(jnp.all(state.done)))

  def run(self, rng: jax.Array, extra: Any = None) -> tuple[base.DecodingState, jax.Array]:
    """Every step, in one compiled loop: the final state and generated log-probs [N]."""
    state, scores, _ = lax.while_loop(self.running, self.step, self.start(rng, extra))
    return state, scores


def decode_loop(
    inputs: base.DecodeInputs,
    choose: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    rng: jax.Array,
    eos_id: int,
    logit_callback: Optional[base.LogitCallback] = None,
    state_callback: Optional[base.StateCallback] = None,
    extra: Any = None,
    after_step: Optional[AfterStep] = None,
) -> tuple[base.DecodingState, jax.Array]:
  """Runs until every row is done; returns the final state and generated log-probs [N].

  Step t chooses generated token t by `choose(log_probs, rng)` from the input
  `inputs.first_token` (t = 0) or generated token t - 1; a row is done after EOS or after
  `max_new_tokens` tokens, and 0 from then on. `extra` seeds `DecodingState.extra`;
  `after_step` (a decoder's own, e.g. blockwise controlled decoding) runs after the state
  callback and may regroup whole rows.
  """
  return DecodeLoop(inputs, choose, eos_id, logit_callback, state_callback, after_step).run(
      rng, extra
  )


def best_first(sequences: jax.Array, scores: jax.Array, per_example: int):
  """[N, L], [N] -> [B, E, L], [B, E] sorted by score, best first."""
  sequences = sequences.reshape(-1, per_example, sequences.shape[-1])
  scores = scores.reshape(-1, per_example)
  order = jnp.argsort(-scores, axis=-1)
  return jnp.take_along_axis(sequences, order[..., None], axis=1), jnp.take_along_axis(
      scores, order, axis=1
  )


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Sampling:
  """Samples from softmax(log_probs / temperature) restricted to the top-k and the top-p nucleus.

  temperature 0 is greedy. `num_decodes` samples per example are returned best first with
  their log-probabilities (under the untempered, callback-adjusted distribution).
  """

  temperature: float = 1.0
  top_k: int = 0  # 0: no top-k filter
  top_p: float = 1.0  # 1: no nucleus filter
  num_decodes: int = 1
  logit_callback: Optional[base.LogitCallback] = None
  state_callback: Optional[base.StateCallback] = None

  def __post_init__(self):
    if self.temperature < 0:
      raise ConfigError(f"Sampling.temperature={self.temperature} must be >= 0 (0 is greedy).")
    if not 0.0 < self.top_p <= 1.0:
      raise ConfigError(f"Sampling.top_p={self.top_p} must be in (0, 1].")
    if self.top_k < 0:
      raise ConfigError(f"Sampling.top_k={self.top_k} must be >= 0 (0 disables it).")
    if self.num_decodes < 1:
      raise ConfigError(f"Sampling.num_decodes={self.num_decodes} must be >= 1.")

  @property
  def rows_per_example(self) -> int:
    return self.num_decodes

  def choose(self, log_probs: jax.Array, rng: jax.Array) -> jax.Array:
    if self.temperature == 0:
      return jnp.argmax(log_probs, axis=-1)
    logits = filters.sampling_distribution(
        log_probs, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p
    )
    return jax.random.categorical(rng, logits, axis=-1)

  def loop(self, inputs: base.DecodeInputs, eos_id: int) -> DecodeLoop:
    return DecodeLoop(inputs, self.choose, eos_id, self.logit_callback, self.state_callback)

  def results(self, state: base.DecodingState, scores: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The loop's end -> [B, num_decodes, L] sequences and [B, num_decodes] scores, best first."""
    return best_first(state.sequences, scores, self.num_decodes)

  def __call__(self, inputs: base.DecodeInputs, *, rng: jax.Array, eos_id: int):
    return self.results(*self.loop(inputs, eos_id).run(rng))


@gin.configurable
def greedy(
    logit_callback: Optional[base.LogitCallback] = None,
    state_callback: Optional[base.StateCallback] = None,
) -> Sampling:
  """The most likely token at every step (Sampling at temperature 0)."""
  return Sampling(temperature=0.0, logit_callback=logit_callback, state_callback=state_callback)
