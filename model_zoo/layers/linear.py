"""A bias-free DenseGeneral whose kernel is created in its final shape, and its matmul.

Flax's nn.DenseGeneral creates multi-axis kernels flat and reshapes them, which breaks
logical sharding constraints applied at init under a mesh; this one never reshapes.

The matmul (`contract`) has its own backward pass: the kernel's gradient is x^T . dy, the
input's batch axes contracted with the output gradient's, in the kernel's own axis order.
JAX's transpose rule computes (dy^T . x) and transposes the result, and XLA's CPU backend
then wrote each output gradient out in a transposed layout (a [tokens, mlp] SwiGLU gradient
is 3x the size of the [tokens, embed] input, which q/k/v, or both gate kernels, share): the
step of decoder_only_small took ~10% longer, tiny's ~18% (tools/benchmark_train --baseline).
The output is named WEIGHT_MATMUL for the remat policies, which cannot see a matmul inside a
custom VJP.
"""

import functools
from typing import Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.ad_checkpoint import checkpoint_name

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
    return contract(x.astype(self.dtype), kernel.astype(self.dtype), axis)


WEIGHT_MATMUL = "weight_matmul"  # checkpoint name of every `contract` output


def contract(x: types.Array, kernel: types.Array, axis: tuple[int, ...]) -> types.Array:
  """x . kernel, contracting x's `axis` (non-negative) with kernel's leading axes in that order."""
  return checkpoint_name(_contract(x, kernel, axis), WEIGHT_MATMUL)


def _dimension_numbers(axis: tuple[int, ...]):
  return ((axis, tuple(range(len(axis)))), ((), ()))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _contract(x, kernel, axis):
  return lax.dot_general(x, kernel, _dimension_numbers(axis))


def _contract_fwd(x, kernel, axis):
  return _contract(x, kernel, axis), (x, kernel)


def _contract_bwd(axis, residuals, dy):
  x, kernel = residuals
  _, input_vjp = jax.vjp(lambda a: lax.dot_general(a, kernel, _dimension_numbers(axis)), x)
  (dx,) = input_vjp(dy)
  rows = tuple(d for d in range(x.ndim) if d not in axis)  # x's axes that dy keeps, in order
  dkernel = lax.dot_general(x, dy, ((rows, tuple(range(len(rows)))), ((), ())))
  # dkernel's input axes come in x's order; the kernel's follow `axis`.
  in_order = sorted(axis)
  perm = [in_order.index(a) for a in axis] + list(range(len(axis), dkernel.ndim))
  return dx, lax.transpose(dkernel, perm).astype(kernel.dtype)


_contract.defvjp(_contract_fwd, _contract_bwd)


def expert_contract(x: types.Array, kernel: types.Array) -> types.Array:
  """Each expert's x . kernel: x [E, ..., in] with kernel [E, in, out] gives [E, ..., out].

  Its backward pass is `contract`'s, per expert: the kernel's gradient is x^T . dy contracted
  over the token axes, in the kernel's own axis order. The output is named WEIGHT_MATMUL.
  """
  return checkpoint_name(_expert_contract(x, kernel), WEIGHT_MATMUL)


def _expert_dimension_numbers(x_ndim: int):
  return (((x_ndim - 1,), (1,)), ((0,), (0,)))


@jax.custom_vjp
def _expert_contract(x, kernel):
  return lax.dot_general(x, kernel, _expert_dimension_numbers(x.ndim))


def _expert_contract_fwd(x, kernel):
  return _expert_contract(x, kernel), (x, kernel)


def _expert_contract_bwd(residuals, dy):
  x, kernel = residuals
  dx = lax.dot_general(dy, kernel, (((dy.ndim - 1,), (2,)), ((0,), (0,))))
  tokens = tuple(range(1, x.ndim - 1))
  dkernel = lax.dot_general(x, dy, ((tokens, tokens), ((0,), (0,))))
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


_expert_contract.defvjp(_expert_contract_fwd, _expert_contract_bwd)
