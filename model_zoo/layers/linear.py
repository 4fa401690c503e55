"""A bias-free DenseGeneral whose kernel is created in its final shape.

Flax's nn.DenseGeneral creates multi-axis kernels flat and reshapes them, which breaks
logical sharding constraints applied at init under a mesh; this one never reshapes.
"""

from typing import Sequence, Union

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from model_zoo.layers import types


def _tuple(x: Union[int, Sequence[int]]) -> tuple[int, ...]:
  return (x,) if isinstance(x, int) else tuple(x)


class DenseGeneral(nn.Module):
  """y = x . W contracting `axis` of x with the leading axes of W[in..., features...]."""

  features: Union[int, Sequence[int]]
  kernel_axes: Sequence[str]
  axis: Union[int, Sequence[int]] = -1
  dtype: types.DType = jnp.float32
  param_dtype: types.DType = jnp.float32
  scale: float = 1.0  # variance scale of the fan-in truncated-normal init

  @nn.compact
  def __call__(self, x: types.Array) -> types.Array:
    features, axis = _tuple(self.features), tuple(a % x.ndim for a in _tuple(self.axis))
    in_shape = tuple(x.shape[a] for a in axis)
    n_in = len(in_shape)
    init = nn.initializers.variance_scaling(
        self.scale,
        "fan_in",
        "truncated_normal",
        in_axis=tuple(range(n_in)),
        out_axis=tuple(range(n_in, n_in + len(features))),
    )
    if len(self.kernel_axes) != n_in + len(features):
      raise ValueError(
          f"{self.name}: kernel_axes {tuple(self.kernel_axes)} must name "
          f"{n_in + len(features)} axes (inputs {in_shape}, features {features})."
      )
    kernel = self.param(
        "kernel",
        nn.with_logical_partitioning(init, tuple(self.kernel_axes)),
        in_shape + features,
        self.param_dtype,
    )
    return lax.dot_general(
        x.astype(self.dtype), kernel.astype(self.dtype), ((axis, tuple(range(n_in))), ((), ()))
    )
