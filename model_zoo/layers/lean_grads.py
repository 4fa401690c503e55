"""Softmax, SiLU and RMS normalisation whose backward pass keeps one array per call.

Autodiff of the plain formulas keeps what the chain rule touches: jax.nn.softmax its
exponentials and their normaliser, x * sigmoid(x) three arrays of x's size, an RMS norm of
1 / sqrt(.) the input, the normalised input and the result. Under `nn.scan` every kept array is
stacked per layer, written and read once more, and with remat policy "none" that traffic costs
more than the arithmetic (tools/benchmark_train --baseline). These custom JVPs state each
derivative from one array of the input's size (the softmax output, the SiLU slope, the
normalised input); forward values are unchanged, and forward and reverse mode both work.
"""

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from model_zoo.layers import types


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def softmax(x: types.Array, axis: int = -1) -> types.Array:
  """softmax(x) along `axis`; its derivative keeps only the output y: y * (t - sum(y * t))."""
  return jax.nn.softmax(x, axis=axis)


@softmax.defjvp
def _softmax_jvp(axis, primals, tangents):
  (x,), (x_dot,) = primals, tangents
  y = softmax(x, axis)
  return y, y * (x_dot - jnp.sum(y * x_dot, axis=axis, keepdims=True))


@jax.custom_jvp
def silu(x: types.Array) -> types.Array:
  """x * sigmoid(x); its derivative keeps only the slope s * (1 + x * (1 - s)), s = sigmoid(x)."""
  return x * jax.nn.sigmoid(x)


@silu.defjvp
def _silu_jvp(primals, tangents):
  (x,), (x_dot,) = primals, tangents
  s = jax.nn.sigmoid(x)
  return x * s, x_dot * (s * (1 + x * (1 - s)))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def rms_norm(x: types.Array, scale: types.Array, epsilon: float) -> types.Array:
  """x / rms * scale, rms = sqrt(mean(x^2, -1) + epsilon). Its derivative keeps the normalised
  input n = x / rms (and 1 / rms, one number a row): scale * (dx - n * mean(n * dx, -1)) / rms
  + n * dscale."""
  normalised, _ = _normalise(x, epsilon)
  return normalised * scale


def _normalise(x: types.Array, epsilon: float) -> tuple[types.Array, types.Array]:
  inv_rms = jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + epsilon)
  return x * inv_rms, inv_rms


def _rms_norm_jvp(epsilon, primals, tangents):
  (x, scale), (x_dot, scale_dot) = primals, tangents
  normalised, inv_rms = _normalise(x, epsilon)
  parts = []  # symbolic zeros skipped: multiplied out, a zero would be computed and kept too
  if not isinstance(x_dot, SymbolicZero):
    centred = x_dot - normalised * jnp.mean(normalised * x_dot, axis=-1, keepdims=True)
    parts.append(centred * inv_rms * scale)
  if not isinstance(scale_dot, SymbolicZero):
    parts.append(normalised * scale_dot)
  tangent = functools.reduce(jnp.add, parts) if parts else jnp.zeros_like(normalised)
  return normalised * scale, tangent


rms_norm.defjvp(_rms_norm_jvp, symbolic_zeros=True)
