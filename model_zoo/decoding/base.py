"""What every decoder works on, and the hooks later decoders (controlled decoding, shallow
fusion) plug into.

A decoder never sees a model, only `DecodeInputs`: a `tokens_to_logits(token [N, 1], cache)
-> (logits [N, V], cache)` step, the initial cache, the first input of each row, how many
tokens each row may generate, and how to reorder cache rows (beam search). N = batch x rows
per example (`num_decodes` or the beam size): models repeat each example before building the
cache, so decoders never reshape one.

The prompt is never fed through the decode loop: the model prefills it into the cache in one
pass before decoding starts, and the initial cache already knows where each row's prompt ends.
Step 0 feeds `first_token` (the row's last prompt token, or BOS when there is no prompt) at
its own position, and each later step feeds the previous generated token at the next
position; the step function keeps each row's position in its cache (reordered with the rows).
So the loop runs once per generated token, whatever the prompt length, and decoders return
generated tokens only: sequences [N, L] with the continuation from column 0, 0 after EOS and
after the row's room (`max_new_tokens[n]` tokens, L - its prompt length) runs out.

Step scores: a decoder adds one score per generated token (EOS included) to a hypothesis. By
default the step returns logits and that score is their log-softmax, a log-probability, so
never above 0. A step that already returns the scores to add (shallow fusion with the exact
log p_ASR + lambda log p_LM + beta |y| of Hu et al. 2023, where renormalising would change
the scores and the ranking) sets `renormalize=False`, and `max_step_score` to an upper bound
on any one step's score: 0 for log-probabilities, beta with a length bonus beta (math.inf if
none is known). Decoders rely on that bound (beam search's early stop: a live hypothesis may
still gain up to bound x the tokens it can still generate), and logit callbacks must keep to it.
"""

import copy
import dataclasses
import math
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp

TokensToLogits = Callable[[jax.Array, Any], tuple[jax.Array, Any]]
ReorderCache = Callable[[Any, jax.Array], Any]


@dataclasses.dataclass(frozen=True)
class DecodeInputs:
  tokens_to_logits: TokensToLogits  # (token [N, 1], cache) -> (next-token logits [N, V], cache)
  cache: Any  # after the prompt's prefill; each step moves every row one position on
  first_token: jax.Array  # [N] int: step 0's input, the last prompt token (BOS 0 if none)
  max_new_tokens: jax.Array  # [N] int: how many tokens row n may generate (L - its prompt)
  length: int  # L: decoders return [N, L] (static)
  reorder_cache: ReorderCache  # (cache, row indices [N]) -> cache with rows gathered
  renormalize: bool = True  # False: the step gives the scores to add, not logits to log-softmax
  max_step_score: float = 0.0  # static: no step scores a token above it (math.inf: unknown)

  def __post_init__(self):
    if math.isnan(self.max_step_score):
      raise ValueError("DecodeInputs.max_step_score is NaN; give a bound, or math.inf for none.")


class DecodingState(flax.struct.PyTreeNode):
  """The loop state the callbacks see, per row.

  `step` is the number of tokens generated so far: the logit callback of step t sees the
  distribution of generated token t (column t of `sequences`), and the state callback runs
  after it is written, with step t + 1. A row is done after EOS or once its room
  (`DecodeInputs.max_new_tokens`) is used up; a state callback may mark rows done, which stops
  them (and the loop once every row is done); clearing a row's done flag has no effect.
  """

  step: jax.Array  # scalar: tokens generated so far (the loop iteration)
  sequences: jax.Array  # [N, L] generated tokens; columns >= step are 0
  previous_token: jax.Array  # [N]: the model's input at this step
  done: jax.Array  # [N]
  cache: Any
  extra: Any = None  # owned by callbacks (e.g. a value function's state)


# step scores [N, V] (log-probs unless DecodeInputs.renormalize is False) -> adjusted ones,
# e.g. + lambda * log p_LM(.); they must stay within DecodeInputs.max_step_score
LogitCallback = Callable[[jax.Array, DecodingState], jax.Array]
# Called after each step's tokens are written; may change the state (stop rows, force tokens).
StateCallback = Callable[[DecodingState], DecodingState]


def room(inputs: DecodeInputs) -> jax.Array:
  """[N] int32: how many tokens each row may generate, within [0, L]."""
  return jnp.clip(inputs.max_new_tokens, 0, inputs.length).astype(jnp.int32)


def next_log_probs(
    inputs: DecodeInputs, state: DecodingState, logit_callback: Optional[LogitCallback]
) -> tuple[jax.Array, Any]:
  """One model step: fp32 scores of the next token (log-probs, unless the inputs give their own
  scores), adjusted by the callback, and the cache."""
  logits, cache = inputs.tokens_to_logits(state.previous_token[:, None], state.cache)
  log_probs = logits.astype(jnp.float32)
  if inputs.renormalize:
    log_probs = jax.nn.log_softmax(log_probs, axis=-1)
  if logit_callback is not None:
    log_probs = logit_callback(log_probs, state)
  return log_probs, cache


def replaced(obj, **changes):
  """A copy of a frozen dataclass (a decoder, a scorer) with `changes`, made without calling
  its constructor: a gin-configurable one would apply (and evaluate) its gin bindings again.
  Decoders with parameters of their own rebuild themselves with it in `with_params`."""
  new = copy.copy(obj)
  for name, value in changes.items():
    object.__setattr__(new, name, value)
  return new
