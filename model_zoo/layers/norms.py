"""Normalisation layers."""

import flax.linen as nn
import jax.numpy as jnp

from model_zoo.layers import types


class RMSNorm(nn.Module):
  """Root-mean-square norm (T5/PaLM "LayerNorm" without mean or bias), computed in fp32."""

  epsilon: float = 1e-6
  dtype: types.DType = jnp.float32
  param_dtype: types.DType = jnp.float32

  @nn.compact
  def __call__(self, x: types.Array) -> types.Array:
    x32 = x.astype(jnp.float32)
    inv_rms = jnp.reciprocal(
        jnp.sqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.epsilon)
    )
    scale = self.param(
        "scale",
        nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
        (x.shape[-1],),
        self.param_dtype,
    )
    return (x32 * inv_rms * scale.astype(jnp.float32)).astype(self.dtype)
