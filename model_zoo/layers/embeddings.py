"""Token embeddings (with the transposed "attend" used by tied output logits) and RoPE."""

import flax.linen as nn
import jax.numpy as jnp

from model_zoo.layers import types


class Embed(nn.Module):
  """A [vocab, embed] table; `attend` reuses it as the output projection when tied."""

  num_embeddings: int
  features: int
  dtype: types.DType = jnp.float32
  param_dtype: types.DType = jnp.float32
  embedding_init: types.Initializer = nn.initializers.normal(stddev=1.0)

  def setup(self):
    self.embedding = self.param(
        "embedding",
        nn.with_logical_partitioning(self.embedding_init, ("vocab", "embed")),
        (self.num_embeddings, self.features),
        self.param_dtype,
    )

  def __call__(self, token_ids: types.Array) -> types.Array:
    return jnp.take(self.embedding, token_ids, axis=0).astype(self.dtype)

  def attend(self, x: types.Array) -> types.Array:
    return jnp.einsum("...d,vd->...v", x.astype(self.dtype), self.embedding.astype(self.dtype))


def apply_rope(
    x: types.Array, positions: types.Array, max_wavelength: float = 10_000.0
) -> types.Array:
  """Rotary position embedding (rotate-half convention) of x [batch, length, heads, head_dim].

  positions: [batch, length] integer positions. Angles are computed in fp32 so that long
  positions keep their precision under bf16 activations.
  """
  half = x.shape[-1] // 2
  inv_timescale = max_wavelength ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions.astype(jnp.float32)[:, :, None, None] * inv_timescale
  sin, cos = jnp.sin(angles), jnp.cos(angles)
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)
