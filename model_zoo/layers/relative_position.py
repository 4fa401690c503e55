"""T5's relative position biases: a learned scalar per (head, log-spaced distance bucket).

One table per layer stack is shared by all its layers (as in T5 / T5.1.1); the bias is
added to the attention logits.
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from model_zoo.layers import types


def relative_position_bucket(
    relative_position: types.Array,
    *,
    bidirectional: bool,
    num_buckets: int = 32,
    max_distance: int = 128
) -> types.Array:
  """Bucket of key_position - query_position: exact for small distances, log-spaced up to
  `max_distance`, one bucket beyond. Bidirectional uses half the buckets per direction."""
  n = -relative_position
  bucket = jnp.zeros_like(n)
  if bidirectional:
    num_buckets //= 2
    bucket = bucket + (n < 0).astype(n.dtype) * num_buckets
    n = jnp.abs(n)
  else:
    n = jnp.maximum(n, 0)
  max_exact = num_buckets // 2
  log_ratio = jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact) / np.log(
      max_distance / max_exact
  )
  large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(n.dtype)
  large = jnp.minimum(large, num_buckets - 1)
  return bucket + jnp.where(n < max_exact, n, large)


class RelativePositionBiases(nn.Module):
  """Returns the bias [1, heads, q_len, k_len] for query i and key j at distance j - i."""

  num_heads: int
  num_buckets: int = 32
  max_distance: int = 128
  dtype: types.DType = jnp.float32
  param_dtype: types.DType = jnp.float32

  @nn.compact
  def __call__(self, q_len: int, k_len: int, *, bidirectional: bool) -> types.Array:
    relative = jnp.arange(k_len)[None, :] - jnp.arange(q_len)[:, None]
    buckets = relative_position_bucket(
        relative,
        bidirectional=bidirectional,
        num_buckets=self.num_buckets,
        max_distance=self.max_distance,
    )
    table = self.param(
        "rel_embedding",
        nn.with_logical_partitioning(
            nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"), ("heads", "relpos_buckets")
        ),
        (self.num_heads, self.num_buckets),
        self.param_dtype,
    )
    return jnp.take(table, buckets, axis=1)[None].astype(self.dtype)
