"""MlpBlock vs float64 NumPy (tolerance 1e-5, fp32 JAX)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo.layers import mlp
from tests.model_zoo import numpy_reference as ref


def _silu(x):
  return x / (1.0 + np.exp(-x))


def _gelu_tanh(x):  # flax nn.gelu defaults to approximate=True (tanh form)
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def _relu(x):
  return np.maximum(x, 0.0)


_NP_ACT = {"silu": _silu, "gelu": _gelu_tanh, "relu": _relu, "linear": lambda x: x}


@pytest.mark.parametrize("activations", [("silu", "linear"), ("gelu", "linear"), ("relu",)])
def test_mlp_block_matches_reference(activations):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 8)) * 2.0
  block = mlp.MlpBlock(hidden_dim=12, activations=activations)
  variables = block.init(jax.random.PRNGKey(0), jnp.asarray(x, jnp.float32))
  p = ref.unbox(variables)["params"]
  if len(activations) == 1:
    assert set(p) == {"wi", "wo"}
    kernels = [p["wi"]["kernel"]]
  else:
    assert set(p) == {"wi_0", "wi_1", "wo"}
    kernels = [p["wi_0"]["kernel"], p["wi_1"]["kernel"]]
  assert all(k.shape == (8, 12) for k in kernels) and p["wo"]["kernel"].shape == (12, 8)
  hidden = np.ones((2, 5, 12))
  for name, kernel in zip(activations, kernels):
    hidden = hidden * _NP_ACT[name](x @ kernel)
  expected = hidden @ p["wo"]["kernel"]
  out = block.apply(variables, jnp.asarray(x, jnp.float32))
  assert out.shape == x.shape
  np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)


def test_gelu_is_tanh_approximation():
  # Guard the reference above: the exact-erf gelu differs from the tanh form by > 1e-4 here.
  from math import erf

  x = np.array([-2.5, -1.0, 0.3, 1.7])
  exact = np.array([0.5 * v * (1 + erf(v / np.sqrt(2))) for v in x])
  got = np.asarray(mlp.activation("gelu")(jnp.asarray(x, jnp.float32)))
  np.testing.assert_allclose(got, _gelu_tanh(x), rtol=1e-6, atol=1e-6)
  assert np.max(np.abs(got - exact)) > 1e-4


def test_unknown_activation_names_the_setting():
  with pytest.raises(ValueError, match="activations"):
    mlp.activation("tanhh")
