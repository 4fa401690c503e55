"""SPAE's semantic pyramid: which latent positions each token layer reads, and which latent
positions each of its tokens stands for.

The encoder's latent grid is G x G. Layer l holds g_l x g_l tokens (`layer_tokens`, default
1, 4, 16 and 64: g = 1, 2, 4, 8), g_l dividing G. Token (i, j) of layer l covers the block of
stride s_l = G / g_l starting at (i s_l, j s_l) and is read at that block's centre
(i s_l + s_l // 2, j s_l + s_l // 2): dilation subsampling. Upper layers have few tokens,
each covering much of the image (semantics); the last has one per latent position
(appearance).
"""

import dataclasses
import math
from typing import Sequence

import jax.numpy as jnp

from model_zoo.errors import ConfigError
from model_zoo.layers import types


@dataclasses.dataclass(frozen=True)
class Pyramid:
  """The token layers over a `grid` x `grid` latent (see the module docstring)."""

  layer_tokens: tuple[int, ...]
  grid: int

  @classmethod
  def of(cls, layer_tokens: Sequence[int]) -> "Pyramid":
    """The pyramid whose last layer has one token per latent position."""
    sides = [math.isqrt(n) for n in layer_tokens]
    if not layer_tokens or any(s * s != n or n < 1 for s, n in zip(sides, layer_tokens)):
      raise ConfigError(
          f"SpaeConfig.layer_tokens={tuple(layer_tokens)}: every layer needs a square number of "
          "tokens (g x g on the latent grid), e.g. (1, 4, 16, 64)."
      )
    grid = sides[-1]
    if any(grid % s for s in sides) or any(b <= a for a, b in zip(sides, sides[1:])):
      raise ConfigError(
          f"SpaeConfig.layer_tokens={tuple(layer_tokens)}: the layers' sides {sides} must grow "
          f"and each divide the last ({grid}, the latent grid's side)."
      )
    return cls(tuple(layer_tokens), grid)

  @property
  def num_layers(self) -> int:
    return len(self.layer_tokens)

  @property
  def num_tokens(self) -> int:
    return sum(self.layer_tokens)

  def side(self, layer: int) -> int:
    return math.isqrt(self.layer_tokens[layer])

  def stride(self, layer: int) -> int:
    return self.grid // self.side(layer)

  def offsets(self) -> list[int]:
    """Where each layer's tokens start in a flat sequence of all layers' tokens."""
    return [sum(self.layer_tokens[:l]) for l in range(self.num_layers)]

  def subsample(self, x: types.Array, layer: int) -> types.Array:
    """x [batch, grid, grid, ...] at `layer`'s token positions: [batch, g, g, ...]."""
    stride = self.stride(layer)
    return x[:, stride // 2 :: stride, stride // 2 :: stride]

  def broadcast(self, x: types.Array, layer: int) -> types.Array:
    """`layer`'s per-token values [batch, g, g, ...] over the blocks they cover: [batch, grid,
    grid, ...]."""
    stride = self.stride(layer)
    return jnp.repeat(jnp.repeat(x, stride, axis=1), stride, axis=2)
