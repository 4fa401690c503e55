"""lean_grads' softmax, SiLU and RMS norm: values against float64 NumPy, derivatives (both
modes) against central finite differences of the NumPy formulas, and what the backward pass
keeps against autodiff of the plain formulas."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import print_saved_residuals

from model_zoo.layers import lean_grads
from tests.model_zoo import numpy_reference as ref

EPS = 1e-2  # RMS-norm epsilon: large enough to matter in the derivative


def _silu(x):
  return x / (1.0 + np.exp(-x))


# (lean op on (x, scale), NumPy float64 formula on (x, scale)); scale is used by the norm only.
OPS = {
    "softmax": (lambda x, s: lean_grads.softmax(x, -1), lambda x, s: ref.softmax(x)),
    "silu": (lambda x, s: lean_grads.silu(x), lambda x, s: _silu(x)),
    "rms_norm": (
        lambda x, s: lean_grads.rms_norm(x, s, EPS),
        lambda x, s: ref.rms_norm(x, s, EPS),
    ),
}


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(3, 5, 7)) * 2.0
  scale = rng.normal(size=(7,))
  return x, scale


def _finite_difference(f, x, scale, dx, dscale, h=1e-6):
  """Directional derivative of the NumPy formula, central differences in float64."""
  return (f(x + h * dx, scale + h * dscale) - f(x - h * dx, scale - h * dscale)) / (2 * h)


@pytest.mark.parametrize("name", sorted(OPS))
def test_values_match_numpy(name):
  lean, numpy_f = OPS[name]
  x, scale = _inputs()
  y = lean(jnp.asarray(x, jnp.float32), jnp.asarray(scale, jnp.float32))
  np.testing.assert_allclose(np.asarray(y), numpy_f(x, scale), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(OPS))
def test_forward_mode_matches_finite_differences(name):
  lean, numpy_f = OPS[name]
  x, scale = _inputs(1)
  rng = np.random.default_rng(2)
  dx, dscale = rng.normal(size=x.shape), rng.normal(size=scale.shape)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  _, tangent = jax.jvp(lean, (f32(x), f32(scale)), (f32(dx), f32(dscale)))
  want = _finite_difference(numpy_f, x, scale, dx, dscale)
  np.testing.assert_allclose(np.asarray(tangent), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradients_match_finite_differences(name):
  """<cotangent, J v> from the reverse-mode gradient equals the finite difference along v."""
  lean, numpy_f = OPS[name]
  x, scale = _inputs(3)
  rng = np.random.default_rng(4)
  cotangent = rng.normal(size=x.shape)
  dx, dscale = rng.normal(size=x.shape), rng.normal(size=scale.shape)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  loss = lambda a, s: jnp.sum(lean(a, s) * f32(cotangent))
  gx, gscale = jax.grad(loss, argnums=(0, 1))(f32(x), f32(scale))
  got = np.sum(np.asarray(gx, np.float64) * dx) + np.sum(np.asarray(gscale, np.float64) * dscale)
  want = np.sum(cotangent * _finite_difference(numpy_f, x, scale, dx, dscale))
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_softmax_gradient_of_a_fully_masked_row_equals_the_plain_one():
  """Rows of equal -1e30 logits (attention padding) give a uniform softmax and the same finite
  gradient as jax.nn.softmax."""
  x = jnp.full((2, 4), -1e30, jnp.float32)
  np.testing.assert_allclose(np.asarray(lean_grads.softmax(x, -1)), 0.25)
  weights = jnp.arange(4.0)
  g = jax.grad(lambda a: jnp.sum(lean_grads.softmax(a, -1) * weights))(x)
  g_plain = jax.grad(lambda a: jnp.sum(jax.nn.softmax(a, -1) * weights))(x)
  assert np.all(np.isfinite(np.asarray(g)))
  np.testing.assert_allclose(np.asarray(g), np.asarray(g_plain), atol=1e-7)


PLAIN = {
    "softmax": lambda x, s: jax.nn.softmax(x, axis=-1),
    "silu": lambda x, s: x * jax.nn.sigmoid(x),
    "rms_norm": lambda x, s: x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + EPS) * s,
}


def _kept(capsys, f, x, scale, wrt_scale: bool) -> list[tuple[int, ...]]:
  """The shapes of the arrays the backward pass of sum(f(x, scale) * w) computes and keeps
  (x counts when it is kept; the constant w does not)."""
  w = jnp.asarray(np.random.default_rng(5).normal(size=x.shape), jnp.float32)
  if wrt_scale:
    print_saved_residuals(lambda a, s: jnp.sum(f(a, s) * w), x, scale)
  else:
    print_saved_residuals(lambda a: jnp.sum(f(a, scale) * w), x)
  lines = capsys.readouterr().out.splitlines()
  shapes = [re.match(r"\w+\[([\d,]*)\] (output of|from the argument)", line) for line in lines]
  return [tuple(int(d) for d in m.group(1).split(",") if d) for m in shapes if m]


@pytest.mark.parametrize("wrt_scale", [False, True])
@pytest.mark.parametrize("name", sorted(OPS))
def test_backward_keeps_one_full_size_array(name, wrt_scale, capsys):
  """The point of the module: one kept array of x's size per call (beside at most a number per
  row and the scale) and fewer kept numbers than the plain formula, so a scanned layer stacks
  less. The norm's scale is a trained parameter (wrt_scale) or a constant."""
  x, scale = (jnp.asarray(a, jnp.float32) for a in _inputs())
  lean = _kept(capsys, OPS[name][0], x, scale, wrt_scale)
  plain = _kept(capsys, PLAIN[name], x, scale, wrt_scale)
  assert [shape for shape in lean if shape == x.shape] == [x.shape]
  size = lambda shapes: sum(int(np.prod(shape)) for shape in shapes)
  assert size(lean) <= x.size + x.size // x.shape[-1] + x.shape[-1]
  assert size(plain) > size(lean)
