"""Token-level losses: cross entropy with label smoothing and z-loss, in fp32."""

import jax
import jax.numpy as jnp

from model_zoo.layers import types


def cross_entropy_with_logits(
    logits: types.Array, targets: types.Array, *, z_loss: float = 0.0, label_smoothing: float = 0.0
) -> tuple[types.Array, types.Array]:
  """Per-token loss and its z-loss part (T5X's formulation).

  loss = -sum_v q_v log p_v - H(q) + z_loss * logsumexp(logits)^2, where q is the one-hot
  target smoothed by `label_smoothing` and H(q) its entropy (so a perfect model scores 0).
  """
  logits = logits.astype(jnp.float32)
  vocab = logits.shape[-1]
  log_z = jax.nn.logsumexp(logits, axis=-1)
  log_probs = logits - log_z[..., None]
  confidence = 1.0 - label_smoothing
  low = label_smoothing / (vocab - 1)
  soft_targets = jax.nn.one_hot(targets, vocab) * (confidence - low) + low
  target_entropy = -(confidence * jnp.log(confidence) + (vocab - 1) * low * jnp.log(low + 1e-20))
  loss = -jnp.sum(soft_targets * log_probs, axis=-1) - target_entropy
  token_z_loss = z_loss * jnp.square(log_z)
  return loss + token_z_loss, token_z_loss


def target_log_probs(logits: types.Array, targets: types.Array) -> types.Array:
  """log p(target) at every position, fp32."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
