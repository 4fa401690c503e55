"""Token-level losses: cross entropy with label smoothing and z-loss, in fp32.

Everything a training step reports per token comes from one `token_losses` call that reads
the [batch, length, vocab] logits for the log-partition, the target's logit and (with label
smoothing) their sum, and materialises nothing vocabulary-sized: with a 32k vocabulary the
logits are the step's largest activation, and each extra pass over them (a one-hot target,
a second log-softmax for a metric) cost measurable step time.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from model_zoo.layers import types


class TokenLosses(NamedTuple):
  """Per-token terms of one pass over the logits (all fp32, shaped like the targets)."""

  loss: types.Array  # the training loss: smoothed cross entropy + z-loss
  z_loss: types.Array  # its z-loss part
  log_prob: types.Array  # log p(target), unsmoothed: -cross entropy
  correct: types.Array  # 1.0 where no logit exceeds the target's (a tie for the top counts)


def _log_partition(logits: types.Array) -> tuple[types.Array, types.Array]:
  """(logsumexp over the vocabulary, the largest logit). The max is a constant for the
  gradient, as in jax.nn.logsumexp (whose gradient is exactly the softmax)."""
  peak = jax.lax.stop_gradient(jnp.max(logits, axis=-1))
  return jnp.log(jnp.sum(jnp.exp(logits - peak[..., None]), axis=-1)) + peak, peak


def _target_logit(logits: types.Array, targets: types.Array) -> types.Array:
  return jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]


def token_losses(
    logits: types.Array, targets: types.Array, *, z_loss: float = 0.0, label_smoothing: float = 0.0
) -> TokenLosses:
  """Loss (T5X's formulation), z-loss, log p(target) and correctness per token.

  loss = -sum_v q_v log p_v - H(q) + z_loss * logsumexp(logits)^2, where q is the one-hot
  target smoothed by `label_smoothing` and H(q) its entropy (so a perfect model scores 0).
  With q_v = low + (confidence - low) [v = target]:
  -sum_v q_v log p_v = -(confidence - low) log p_target - low (sum_v logits_v - V log Z).
  """
  logits = logits.astype(jnp.float32)
  vocab = logits.shape[-1]
  log_z, peak = _log_partition(logits)
  target_logit = _target_logit(logits, targets)
  log_prob = target_logit - log_z
  confidence = 1.0 - label_smoothing
  cross_entropy = -log_prob
  if label_smoothing:
    low = label_smoothing / (vocab - 1)
    sum_log_probs = jnp.sum(logits, axis=-1) - vocab * log_z
    cross_entropy = -(confidence - low) * log_prob - low * sum_log_probs
    cross_entropy -= -(confidence * jnp.log(confidence) + (vocab - 1) * low * jnp.log(low))
  token_z_loss = z_loss * jnp.square(log_z)
  # From the max logsumexp needs anyway: an argmax is one more pass over the logits
  # (3% of a small model's step on CPU). Ties for the top differ from argmax's first-index
  # rule; they are vanishingly rare with float logits.
  correct = (target_logit >= peak).astype(jnp.float32)
  return TokenLosses(cross_entropy + token_z_loss, token_z_loss, log_prob, correct)


def cross_entropy_with_logits(
    logits: types.Array, targets: types.Array, *, z_loss: float = 0.0, label_smoothing: float = 0.0
) -> tuple[types.Array, types.Array]:
  """Per-token loss and its z-loss part (see `token_losses`)."""
  terms = token_losses(logits, targets, z_loss=z_loss, label_smoothing=label_smoothing)
  return terms.loss, terms.z_loss


def target_log_probs(logits: types.Array, targets: types.Array) -> types.Array:
  """log p(target) at every position, fp32."""
  logits = logits.astype(jnp.float32)
  return _target_logit(logits, targets) - _log_partition(logits)[0]
