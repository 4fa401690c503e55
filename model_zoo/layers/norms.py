"""Normalisation layers."""

import flax.linen as nn
import jax.numpy as jnp

from model_zoo.layers import lean_grads, types


class RMSNorm(nn.Module):
  """Root-mean-square norm (T5/PaLM "LayerNorm" without mean or bias), computed in fp32."""

  epsilon: float = 1e-6
  dtype: types.DType = jnp.float32
  param_dtype: types.DType = jnp.float32

  @nn.compact
  def __call__(self, x: types.Array) -> types.Array:
    scale = self.param(
        "scale",
        nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
        (x.shape[-1],),
        self.param_dtype,
    )
    normed = lean_grads.rms_norm(x.astype(jnp.float32), scale.astype(jnp.float32), self.epsilon)
    return normed.astype(self.dtype)
