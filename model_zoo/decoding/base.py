"""What every decoder works on, and the hooks later decoders (controlled decoding, shallow
fusion) plug into.

A decoder never sees a model, only `DecodeInputs`: a `tokens_to_logits(token [N, 1], cache)
-> (logits [N, V], cache)` step, the initial cache, the prompt tokens to force, and how to
reorder cache rows (beam search). N = batch x rows per example (`num_decodes` or the beam
size): models repeat each example before building the cache, so decoders never reshape one.
"""

import dataclasses
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp

TokensToLogits = Callable[[jax.Array, Any], tuple[jax.Array, Any]]
ReorderCache = Callable[[Any, jax.Array], Any]


@dataclasses.dataclass(frozen=True)
class DecodeInputs:
  tokens_to_logits: TokensToLogits
  cache: Any
  forced_tokens: jax.Array  # [N, L]: row n's first num_forced[n] tokens are given (the prompt)
  num_forced: jax.Array  # [N]
  reorder_cache: ReorderCache  # (cache, row indices [N]) -> cache with rows gathered


class DecodingState(flax.struct.PyTreeNode):
  """The loop state the callbacks see, per row: step t is the position being chosen."""

  step: jax.Array  # scalar
  sequences: jax.Array  # [N, L]; positions >= step are 0
  previous_token: jax.Array  # [N]: the model's input at this step
  done: jax.Array  # [N]
  cache: Any
  extra: Any = None  # owned by callbacks (e.g. a value function's state)


# log_probs [N, V] (after log-softmax) -> adjusted log_probs, e.g. + lambda * log p_LM(.)
LogitCallback = Callable[[jax.Array, DecodingState], jax.Array]
# Called after each step's tokens are written; may change the state (stop rows, force tokens).
StateCallback = Callable[[DecodingState], DecodingState]


def next_log_probs(
    inputs: DecodeInputs, state: DecodingState, logit_callback: Optional[LogitCallback]
) -> tuple[jax.Array, Any]:
  """One model step: fp32 log-probs of the next token (adjusted by the callback) and the cache."""
  logits, cache = inputs.tokens_to_logits(state.previous_token[:, None], state.cache)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  if logit_callback is not None:
    log_probs = logit_callback(log_probs, state)
  return log_probs, cache


def strip_prompt(sequences: jax.Array, num_forced: jax.Array) -> jax.Array:
  """Shifts each row [..., L] left by its prompt length, so the continuation starts at 0."""
  length = sequences.shape[-1]
  idx = jnp.arange(length) + num_forced[..., None]
  shifted = jnp.take_along_axis(sequences, jnp.minimum(idx, length - 1), axis=-1)
  return jnp.where(idx < length, shifted, 0)
