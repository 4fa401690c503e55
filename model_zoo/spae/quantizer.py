"""Streaming average quantization (SAQ) over a semantic pyramid, with a frozen codebook.

The reconstruction after layer l is the running mean of the embeddings chosen so far,
zhat_l = (1/l) sum_{i<=l} e(k_i) (each layer's token broadcast over the block it covers), so
token k_l is the code nearest to l z - sum_{i<l} e(k_i), the residual that brings the mean
to z. With one layer this is plain nearest-neighbour VQ. Every prefix of the layers is a
reconstruction of its own: the decoder learns to read each, and quality degrades gracefully
when an LM writes fewer tokens.
"""

import dataclasses

import jax
import jax.numpy as jnp

from model_zoo.layers import types
from model_zoo.spae.pyramid import Pyramid


@dataclasses.dataclass(frozen=True)
class Quantized:
  """SAQ of a batch of latents z [batch, grid, grid, dim] (arrays per layer l, first first).

  tokens[l]: [batch, g_l, g_l] code indices; targets[l]: [batch, g_l, g_l, dim] the residuals
  l z - sum_{i<l} e(k_i) that layer l quantized; means[l]: [batch, grid, grid, dim] the
  reconstruction zhat_l after layer l.
  """

  tokens: list[types.Array]
  targets: list[types.Array]
  means: list[types.Array]


def squared_distances(x: types.Array, codes: types.Array) -> types.Array:
  """||x - c||^2 for every code c: [..., dim] x [codes, dim] -> [..., codes], in fp32."""
  x = x.astype(jnp.float32)
  codes = codes.astype(jnp.float32)
  cross = jnp.einsum("...d,cd->...c", x, codes, precision=jax.lax.Precision.HIGHEST)
  return jnp.sum(x * x, -1, keepdims=True) - 2 * cross + jnp.sum(codes * codes, -1)


def streaming_average_quantize(z: types.Array, codes: types.Array, pyramid: Pyramid) -> Quantized:
  """SAQ of z over `pyramid` with `codes` [num_codes, dim] (see the module docstring).

  A token's residual uses the earlier layers' tokens that cover the position it reads;
  no gradient flows through the choice of a token (argmin).
  """
  tokens, targets, means = [], [], []
  total = jnp.zeros(z.shape, jnp.float32)  # sum_{i<l} e(k_i), broadcast to the full grid
  for layer in range(pyramid.num_layers):
    target = (layer + 1) * pyramid.subsample(z, layer).astype(jnp.float32)
    target = target - pyramid.subsample(total, layer)
    token = jnp.argmin(squared_distances(jax.lax.stop_gradient(target), codes), axis=-1)
    total = total + pyramid.broadcast(jnp.take(codes, token, axis=0), layer)
    tokens.append(token)
    targets.append(target)
    means.append(total / (layer + 1))
  return Quantized(tokens, targets, means)


def dequantize(tokens: list[types.Array], codes: types.Array, pyramid: Pyramid) -> types.Array:
  """zhat after len(tokens) layers: the running mean of the tokens' embeddings [batch, grid,
  grid, dim] (an LM's SAQ tokens back to the decoder's input)."""
  total = sum(
      pyramid.broadcast(jnp.take(codes, t, axis=0).astype(jnp.float32), layer)
      for layer, t in enumerate(tokens)
  )
  return total / len(tokens)
