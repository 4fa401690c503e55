"""RMSNorm vs a float64 NumPy reference (tolerance 1e-5 relative/absolute, fp32 JAX)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo.layers import norms
from tests.model_zoo import numpy_reference as ref


@pytest.mark.parametrize("eps", [1e-6, 1e-2])
def test_rmsnorm_matches_reference(eps):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 12)) * 3.0
  layer = norms.RMSNorm(epsilon=eps)
  variables = layer.init(jax.random.PRNGKey(0), jnp.asarray(x, jnp.float32))
  params = ref.unbox(variables)["params"]
  np.testing.assert_array_equal(params["scale"], np.ones(12))  # initialised to ones
  scale = rng.normal(size=(12,))
  y = layer.apply(
      {"params": {"scale": jnp.asarray(scale, jnp.float32)}}, jnp.asarray(x, jnp.float32)
  )
  assert y.shape == x.shape and y.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(y), ref.rms_norm(x, scale, eps), rtol=1e-5, atol=1e-5)


def test_rmsnorm_epsilon_matters_for_small_inputs():
  x = np.full((1, 4), 1e-3)
  layer = norms.RMSNorm(epsilon=1e-6)
  y = layer.apply({"params": {"scale": jnp.ones(4)}}, jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(np.asarray(y), ref.rms_norm(x, np.ones(4), 1e-6), rtol=1e-5)
  assert abs(float(y[0, 0]) - 1.0) > 1e-4  # eps is added inside the sqrt, not ignored


def test_rmsnorm_bf16_output_dtype_computed_in_fp32():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 8)) * 100.0
  layer = norms.RMSNorm(dtype=jnp.bfloat16)
  y = layer.apply({"params": {"scale": jnp.ones(8)}}, jnp.asarray(x, jnp.bfloat16))
  assert y.dtype == jnp.bfloat16
  x_bf16 = np.asarray(jnp.asarray(x, jnp.bfloat16).astype(jnp.float32), np.float64)
  np.testing.assert_allclose(
      np.asarray(y, np.float64), ref.rms_norm(x_bf16, np.ones(8), 1e-6), rtol=1e-2
  )
