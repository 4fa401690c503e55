"""Embed (lookup / attend) and apply_rope vs float64 NumPy; RoPE invariants.

Tolerances: 1e-5 (fp32 JAX vs fp64 NumPy) for small positions (< 64, so the fp32 angle
error pos * 6e-8 stays far below that).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo.layers import embeddings
from tests.model_zoo import numpy_reference as ref


def test_embed_lookup_and_attend():
  vocab, dim = 11, 6
  layer = embeddings.Embed(vocab, dim)
  ids = np.array([[0, 3, 10, 3], [7, 1, 2, 9]])
  variables = layer.init(jax.random.PRNGKey(0), jnp.asarray(ids))
  table = ref.unbox(variables)["params"]["embedding"]
  assert table.shape == (vocab, dim)
  out = layer.apply(variables, jnp.asarray(ids))
  np.testing.assert_array_equal(np.asarray(out, np.float64), table[ids])
  x = np.random.default_rng(0).normal(size=(2, 3, dim))
  logits = layer.apply(variables, jnp.asarray(x, jnp.float32), method=layer.attend)
  assert logits.shape == (2, 3, vocab)
  np.testing.assert_allclose(np.asarray(logits), x @ table.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("max_wavelength", [10_000.0, 100.0])
def test_rope_matches_reference(max_wavelength):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 7, 3, 8))
  positions = rng.integers(0, 50, size=(2, 7))
  out = embeddings.apply_rope(jnp.asarray(x, jnp.float32), jnp.asarray(positions), max_wavelength)
  assert out.shape == x.shape and out.dtype == jnp.float32
  np.testing.assert_allclose(
      np.asarray(out), ref.rope(x, positions, max_wavelength), rtol=1e-5, atol=1e-5
  )


def test_rope_position_zero_is_identity_and_first_pair_rotates_by_position():
  x = np.zeros((1, 2, 1, 4))
  x[..., 0] = 1.0  # x1[0] = 1: rotates with frequency 1 (i = 0)
  out = np.asarray(embeddings.apply_rope(jnp.asarray(x, jnp.float32), jnp.array([[0, 1]])))
  np.testing.assert_allclose(out[0, 0, 0], [1, 0, 0, 0], atol=1e-7)
  # position 1, i = 0: [x1 cos - x2 sin, x2 cos + x1 sin] = [cos 1, 0, sin 1, 0] (rotate-half layout)
  np.testing.assert_allclose(out[0, 1, 0], [np.cos(1.0), 0, np.sin(1.0), 0], atol=1e-6)


def test_rope_preserves_norm():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 9, 4, 16))
  positions = rng.integers(0, 60, size=(2, 9))
  out = np.asarray(embeddings.apply_rope(jnp.asarray(x, jnp.float32), jnp.asarray(positions)))
  np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)


def test_rope_dot_product_depends_only_on_relative_position():
  rng = np.random.default_rng(2)
  d = 16
  q, k = rng.normal(size=d), rng.normal(size=d)

  def rot(vec, pos):
    arr = jnp.asarray(vec, jnp.float32).reshape(1, 1, 1, d)
    return np.asarray(embeddings.apply_rope(arr, jnp.array([[pos]])), np.float64).reshape(d)

  for delta in (0, 3, -5):
    dots = [rot(q, m) @ rot(k, m - delta) for m in (5, 12, 30)]
    np.testing.assert_allclose(dots, dots[0], rtol=1e-5, atol=1e-5)
  # and it does depend on the offset (otherwise the test above would be vacuous)
  assert abs(rot(q, 5) @ rot(k, 5) - rot(q, 5) @ rot(k, 2)) > 1e-3


def test_rope_bf16_keeps_dtype():
  x = jnp.ones((1, 3, 1, 4), jnp.bfloat16)
  out = embeddings.apply_rope(x, jnp.array([[0, 1, 2]]))
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(
      np.asarray(out, np.float64), ref.rope(np.ones((1, 3, 1, 4)), [[0, 1, 2]]), atol=1e-2
  )
