"""dot_product_attention (MHA/GQA/MQA) and the Attention layer vs float64 NumPy.

fp32 JAX vs fp64 NumPy: tolerance 1e-5 (rtol and atol).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from model_zoo.layers import attention
from tests.model_zoo import numpy_reference as ref

TOL = dict(rtol=1e-5, atol=1e-5)


def _random_mask(rng, b, t, s):
  mask = rng.random((b, 1, t, s)) < 0.6
  mask[..., 0] = True  # no fully masked rows here (tested separately)
  return mask


@pytest.mark.parametrize("implementation", ["einsum", "xla"])
@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1)])  # MHA, GQA, MQA
@pytest.mark.parametrize("masked", [False, True])
def test_dot_product_attention(heads, kv_heads, masked, implementation):
  rng = np.random.default_rng(heads * 10 + kv_heads)
  b, t, s, d = 2, 5, 6, 8
  q = rng.normal(size=(b, t, heads, d))
  k = rng.normal(size=(b, s, kv_heads, d))
  v = rng.normal(size=(b, s, kv_heads, d))
  mask = _random_mask(rng, b, t, s) if masked else None
  got = attention.dot_product_attention(
      jnp.asarray(q, jnp.float32),
      jnp.asarray(k, jnp.float32),
      jnp.asarray(v, jnp.float32),
      None if mask is None else jnp.asarray(mask),
      implementation=implementation,
  )
  assert got.shape == (b, t, heads, d)
  np.testing.assert_allclose(np.asarray(got), ref.attention(q, k, v, mask), **TOL)


def test_gqa_head_grouping_is_h_div_group():
  # kv head 0 has values 0, kv head 1 has values 1: query heads 0,1 -> 0 and heads 2,3 -> 1.
  b, t, s, d = 1, 2, 3, 4
  q = jnp.asarray(np.random.default_rng(0).normal(size=(b, t, 4, d)), jnp.float32)
  k = jnp.zeros((b, s, 2, d))
  v = jnp.stack([jnp.zeros((b, s, d)), jnp.ones((b, s, d))], axis=2)
  out = np.asarray(attention.dot_product_attention(q, k, v))
  np.testing.assert_allclose(out[:, :, :2], 0.0, atol=1e-7)
  np.testing.assert_allclose(out[:, :, 2:], 1.0, atol=1e-6)


def test_broadcast_mask_and_fully_masked_row_is_finite():
  rng = np.random.default_rng(3)
  q, k, v = (rng.normal(size=(2, 4, 2, 8)) for _ in range(3))
  mask = np.tril(np.ones((4, 4), bool))[None, None]  # [1, 1, t, s] broadcast over batch
  mask = np.array(mask)
  mask[..., 2, :] = False  # a fully masked (padding) query row
  got = np.asarray(
      attention.dot_product_attention(
          *(jnp.asarray(a, jnp.float32) for a in (q, k, v)), jnp.asarray(mask)
      )
  )
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, ref.attention(q, k, v, mask), **TOL)  # uniform over all keys


def test_dot_product_attention_rejects_bad_heads_and_implementation():
  q = jnp.zeros((1, 2, 3, 4))
  kv = jnp.zeros((1, 2, 2, 4))
  with pytest.raises(ValueError, match="num_kv_heads"):
    attention.dot_product_attention(q, kv, kv)
  with pytest.raises(ValueError, match="implementation"):
    attention.dot_product_attention(q, q, q, implementation="flash9")


def _random_params(layer, rng, *inputs):
  """Random N(0, 0.3^2) weights in the tree layout and shapes that `init` produces (cheaper
  than running the initialisers eagerly)."""
  shapes = meta.unbox(jax.eval_shape(layer.init, jax.random.PRNGKey(0), *inputs))
  return jax.tree_util.tree_map(
      lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), jnp.float32), shapes
  )


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1)])
def test_attention_layer_self_attention_with_rope_positions_and_mask(heads, kv_heads):
  rng = np.random.default_rng(heads + kv_heads)
  b, n, embed, head_dim = 2, 6, 12, 8
  x = rng.normal(size=(b, n, embed))
  positions = np.array([[0, 1, 2, 0, 1, 2], [3, 4, 5, 6, 7, 8]])  # packed row + offset row
  mask = np.tril(np.ones((n, n), bool))[None, None].repeat(b, 0)
  mask[0, 0, 3:, :3] = False  # segment boundary in row 0
  layer = attention.Attention(
      num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim, rope_max_wavelength=1000.0
  )
  xj = jnp.asarray(x, jnp.float32)
  variables = _random_params(layer, rng, xj, xj)
  p = ref.unbox(variables)["params"]
  assert p["query"]["kernel"].shape == (embed, heads, head_dim)
  assert p["key"]["kernel"].shape == (embed, kv_heads, head_dim)
  assert p["value"]["kernel"].shape == (embed, kv_heads, head_dim)
  assert p["out"]["kernel"].shape == (heads, head_dim, embed)
  got = layer.apply(
      variables,
      xj,
      xj,
      jnp.asarray(mask),
      q_positions=jnp.asarray(positions),
      kv_positions=jnp.asarray(positions),
  )
  expected = ref.attention_module(p, x, x, mask, positions, positions, max_wavelength=1000.0)
  np.testing.assert_allclose(np.asarray(got), expected, **TOL)
  # default positions are arange(length)
  got_default = layer.apply(variables, xj, xj)
  np.testing.assert_allclose(
      np.asarray(got_default), ref.attention_module(p, x, x, max_wavelength=1000.0), **TOL
  )


def test_attention_layer_cross_attention_without_rope():
  rng = np.random.default_rng(7)
  b, t, s, embed = 2, 3, 5, 12
  xq, xkv = rng.normal(size=(b, t, embed)), rng.normal(size=(b, s, embed))
  mask = rng.random((b, 1, t, s)) < 0.7
  mask[..., 0] = True
  layer = attention.Attention(num_heads=2, num_kv_heads=1, head_dim=4, use_rope=False)
  variables = _random_params(
      layer, rng, jnp.asarray(xq, jnp.float32), jnp.asarray(xkv, jnp.float32)
  )
  got = layer.apply(
      variables, jnp.asarray(xq, jnp.float32), jnp.asarray(xkv, jnp.float32), jnp.asarray(mask)
  )
  expected = ref.attention_module(ref.unbox(variables)["params"], xq, xkv, mask, use_rope=False)
  assert got.shape == (b, t, embed)
  np.testing.assert_allclose(np.asarray(got), expected, **TOL)
