"""DecoderOnlyLM: packed segments are isolated; scan == unrolled; remat changes nothing.

All fp32 (config dtype="float32"); model-vs-model comparisons at 1e-5.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from model_zoo import dense
from tests.model_zoo import tiny_lm

TOL = dict(rtol=1e-5, atol=1e-5)
TINY = tiny_lm.TINY


def _init(cfg):
  return dense.DecoderOnlyLM(cfg), tiny_lm.params_for(cfg)


def _forward(module):
  return jax.jit(lambda p, *args: module.apply({"params": p}, *args))


def _shift_right(tokens):
  return np.concatenate([np.zeros_like(tokens[:, :1]), tokens[:, :-1]], axis=1)


# One packed row: segment 1 (3 tokens), segment 2 (4 tokens), one padding position.
SEG1 = np.array([5, 9, 2])
SEG2 = np.array([7, 3, 11, 4])


def _packed(seg1, seg2):
  targets = np.concatenate([seg1, seg2, [0]])[None]
  inputs = np.concatenate([_shift_right(seg1[None])[0], _shift_right(seg2[None])[0], [0]])[None]
  segment_ids = np.array([[1, 1, 1, 2, 2, 2, 2, 0]])
  positions = np.array([[0, 1, 2, 0, 1, 2, 3, 0]])
  return tuple(jnp.asarray(a) for a in (inputs, targets, segment_ids, positions))


@pytest.mark.parametrize("scan_layers", [True, False])
def test_packed_segments_match_unpacked_and_do_not_interact(scan_layers):
  cfg = dataclasses.replace(TINY, scan_layers=scan_layers)
  inputs, targets, segment_ids, positions = _packed(SEG1, SEG2)
  module, params = _init(cfg)
  fwd = _forward(module)
  packed = np.asarray(fwd(params, inputs, targets, segment_ids, positions))
  assert packed.shape == (1, 8, cfg.vocab_size) and np.all(np.isfinite(packed))
  for seg, sl in ((SEG1, slice(0, 3)), (SEG2, slice(3, 7))):
    # the segment alone, positions from 0 (right-padded to the same length: one compilation)
    alone_targets = np.zeros((1, 8), np.int32)
    alone_targets[0, : len(seg)] = seg
    alone = np.asarray(
        fwd(params, jnp.asarray(_shift_right(alone_targets)), jnp.asarray(alone_targets))
    )
    np.testing.assert_allclose(packed[:, sl], alone[:, : len(seg)], **TOL)
  # Perturbing segment 1 leaves segment 2 bit-for-bit unchanged, and does change segment 1.
  perturbed = np.asarray(fwd(params, *_packed(np.array([17, 1, 30]), SEG2)))
  np.testing.assert_array_equal(perturbed[:, 3:7], packed[:, 3:7])
  assert np.max(np.abs(perturbed[:, :3] - packed[:, :3])) > 1e-3


def test_xla_attention_implementation_matches_einsum_on_packed_batch():
  batch = _packed(SEG1, SEG2)
  module, params = _init(TINY)
  einsum = np.asarray(_forward(module)(params, *batch))
  xla = np.asarray(
      _forward(dense.DecoderOnlyLM(tiny_lm.config(attention_impl="xla")))(params, *batch)
  )
  assert np.all(np.isfinite(xla))  # the fully masked padding row stays finite
  np.testing.assert_allclose(xla, einsum, **TOL)


def test_prefix_lm_prefix_sees_whole_prefix_but_not_targets():
  cfg = TINY
  tokens = jnp.asarray([[4, 8, 15, 16, 23, 29]])
  causal_attention = jnp.asarray([[1, 1, 1, 0, 0, 0]])
  module, params = _init(cfg)
  fwd = _forward(module)
  base = np.asarray(fwd(params, tokens, tokens, None, None, causal_attention))
  changed_prefix = tokens.at[0, 2].set(3)
  out = np.asarray(fwd(params, changed_prefix, changed_prefix, None, None, causal_attention))
  assert np.max(np.abs(out[:, 0] - base[:, 0])) > 1e-3  # position 0 sees prefix position 2
  changed_target = tokens.at[0, 4].set(3)
  out = np.asarray(fwd(params, changed_target, changed_target, None, None, causal_attention))
  np.testing.assert_array_equal(out[:, :4], base[:, :4])  # nothing before 4 sees position 4


def test_scan_and_unrolled_layers_agree_with_same_params():
  tokens = jnp.asarray(np.random.default_rng(0).integers(1, TINY.vocab_size, size=(2, 7)))
  scanned, params = _init(TINY)
  leaves = jax.tree_util.tree_leaves(params["decoder"]["layers"])
  assert all(leaf.shape[0] == TINY.num_layers for leaf in leaves)
  unrolled_cfg = dataclasses.replace(TINY, scan_layers=False)
  unrolled = dense.DecoderOnlyLM(unrolled_cfg)
  unrolled_params = tiny_lm.unstack_layers(params, TINY.num_layers)
  # the converted tree has exactly the structure the unrolled model initialises
  ref_struct = jax.tree_util.tree_structure(
      meta.unbox(jax.eval_shape(unrolled.init, jax.random.PRNGKey(0), tokens, tokens))["params"]
  )
  assert jax.tree_util.tree_structure(unrolled_params) == ref_struct
  a = np.asarray(_forward(scanned)(params, tokens, tokens))
  b = np.asarray(_forward(unrolled)(unrolled_params, tokens, tokens))
  np.testing.assert_allclose(a, b, **TOL)
  # and the layers really differ (a stack of identical layers would hide a slicing mistake)
  swapped = dict(
      unrolled_params,
      decoder=dict(
          unrolled_params["decoder"],
          layers_0=unrolled_params["decoder"]["layers_1"],
          layers_1=unrolled_params["decoder"]["layers_0"],
      ),
  )
  c = np.asarray(_forward(unrolled)(swapped, tokens, tokens))
  assert np.max(np.abs(a - c)) > 1e-3


def _assert_trees_close(a, b, **tol):
  flat_a, tree_a = jax.tree_util.tree_flatten(a)
  flat_b, tree_b = jax.tree_util.tree_flatten(b)
  assert tree_a == tree_b
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


@pytest.mark.parametrize("policy", ["full", "dots_no_batch"])
def test_remat_gives_same_logits_and_gradients(policy):
  """A remat policy vs "none" (scanned), and the policy unrolled vs "none" scanned (its
  gradients re-stacked into per-layer slices): same logits, loss and gradients to 1e-5."""
  rng = np.random.default_rng(1)
  tokens = jnp.asarray(rng.integers(1, TINY.vocab_size, size=(2, 6)))
  weights = jnp.asarray(rng.normal(size=(2, 6, TINY.vocab_size)), jnp.float32)

  def value_and_grad(cfg):
    module, params = _init(cfg)

    def loss(p):
      logits = module.apply({"params": p}, tokens, tokens)
      return jnp.sum(jax.nn.log_softmax(logits) * weights), logits

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

  (loss_a, logits_a), grads_a = value_and_grad(TINY)
  assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree_util.tree_leaves(grads_a["decoder"]))
  for scan_layers in (True, False):
    cfg = tiny_lm.config(scan_layers=scan_layers, remat_policy=policy)
    (loss_b, logits_b), grads_b = value_and_grad(cfg)
    np.testing.assert_allclose(np.asarray(logits_b), np.asarray(logits_a), **TOL)
    np.testing.assert_allclose(float(loss_b), float(loss_a), rtol=1e-5)
    expected = grads_a if scan_layers else tiny_lm.unstack_layers(grads_a, TINY.num_layers)
    _assert_trees_close(grads_b, expected, rtol=1e-5, atol=1e-5)
