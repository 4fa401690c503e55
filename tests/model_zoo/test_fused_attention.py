"""Segment-aware fused attention (segment_attention, attention_impl xla / pallas) vs the einsum
path with the dense decoder mask, on packed rows (two segments + padding) and padded rows.

On a CPU, segment_attention's "xla" is jax.nn.dot_product_attention with the arguments "cudnn"
gets on a GPU (is_causal + row lengths or a segment mask); model-level "cudnn" runs with
jax.nn's implementation swapped to "xla" (`cudnn_on_cpu`); "pallas" runs the GPU flash kernel
interpreted. Padding rows are compared only for finiteness (their loss weight is 0). fp32,
tolerance 1e-5.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo import dense
from model_zoo.errors import ConfigError
from model_zoo.layers import attention, masks
from tests.model_zoo import tiny_lm

TOL = dict(rtol=1e-5, atol=1e-5)
FUSED = ["xla", "pallas"]


@pytest.fixture
def cudnn_on_cpu(monkeypatch):
  """jax.nn.dot_product_attention asked for "cudnn" runs "xla" with the same arguments."""
  original = jax.nn.dot_product_attention
  calls = []

  def swapped(*args, implementation=None, **kwargs):
    assert implementation == "cudnn", implementation
    calls.append(kwargs)
    return original(*args, implementation="xla", **kwargs)

  monkeypatch.setattr(jax.nn, "dot_product_attention", swapped)
  return calls


# Row 0: segments of 5 and 7 tokens, then 4 padding; row 1: 9 and 3 tokens, 4 padding.
SEGMENT_IDS = np.array([[1] * 5 + [2] * 7 + [0] * 4, [1] * 9 + [2] * 3 + [0] * 4])
# Unpacked rows padded at the end (lengths 11 and 16).
LENGTHS = np.array([11, 16])


def _targets(segment_ids):
  rng = np.random.default_rng(0)
  return jnp.asarray(np.where(segment_ids > 0, rng.integers(2, 32, segment_ids.shape), 0))


def _unpacked_targets():
  return _targets((np.arange(16)[None] < LENGTHS[:, None]).astype(np.int32))


def _qkv(heads, kv_heads, batch=2, length=16, head_dim=8):
  keys = jax.random.split(jax.random.PRNGKey(heads * 10 + kv_heads), 3)
  shapes = [(batch, length, heads, head_dim)] + [(batch, length, kv_heads, head_dim)] * 2
  return [jax.random.normal(k, s, jnp.float32) for k, s in zip(keys, shapes)]


def _loss_weighted(fn, weights):
  """Sum of the outputs of real (weight 1) rows times a fixed random projection."""
  w = jax.random.normal(jax.random.PRNGKey(7), (16, 1, 8))

  def loss(q, k, v):
    out = fn(q, k, v)
    return jnp.sum(out * w * weights[:, :, None, None]), out

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


@pytest.mark.slow
@pytest.mark.parametrize("implementation", FUSED)
@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1)])  # MHA, GQA, MQA
@pytest.mark.parametrize("packed", [True, False])
def test_segment_attention_matches_masked_einsum(implementation, heads, kv_heads, packed):
  targets = _targets(SEGMENT_IDS) if packed else _unpacked_targets()
  segment_ids = jnp.asarray(SEGMENT_IDS) if packed else None
  segments = attention.decoder_segments(targets, segment_ids)
  assert segments.packed == packed
  mask = masks.decoder_self_attention_mask(targets, segment_ids)
  weights = (targets > 0).astype(jnp.float32)
  q, k, v = _qkv(heads, kv_heads)
  (want_loss, want_out), want_grads = _loss_weighted(
      lambda q, k, v: attention.dot_product_attention(q, k, v, mask, "einsum"), weights
  )(q, k, v)
  (got_loss, got_out), got_grads = _loss_weighted(
      lambda q, k, v: attention.segment_attention(q, k, v, segments, implementation), weights
  )(q, k, v)
  assert np.all(np.isfinite(got_out))  # padding rows included
  real = np.asarray(weights, bool)
  np.testing.assert_allclose(np.asarray(got_out)[real], np.asarray(want_out)[real], **TOL)
  np.testing.assert_allclose(got_loss, want_loss, **TOL)
  for got, want in zip(got_grads, want_grads):
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, **TOL)


def _model_loss(cfg, params, targets, segment_ids, positions):
  inputs = jnp.concatenate([jnp.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
  weights = (targets > 0).astype(jnp.float32)

  def loss(p):
    logits = dense.DecoderOnlyLM(cfg).apply({"params": p}, inputs, targets, segment_ids, positions)
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.take_along_axis(logp, targets[..., None], -1)[..., 0] * weights), logits

  return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)


@pytest.mark.parametrize("implementation", ["cudnn", "pallas"])
@pytest.mark.parametrize("remat_policy", ["none", "dots_no_batch"])
def test_decoder_only_lm_fused_matches_einsum_on_packed_batch(
    implementation, remat_policy, request
):
  """The whole scanned model: loss-weighted loss and every parameter gradient."""
  if implementation == "cudnn":
    calls = request.getfixturevalue("cudnn_on_cpu")
  targets = _targets(SEGMENT_IDS)
  segment_ids = jnp.asarray(SEGMENT_IDS)
  starts = np.array([[0] * 5 + [5] * 7 + [12] * 4, [0] * 9 + [9] * 3 + [12] * 4])
  positions = jnp.asarray(np.arange(16)[None] - starts)
  params = tiny_lm.params_for(tiny_lm.TINY)
  cfg = tiny_lm.config(remat_policy=remat_policy)
  (want, want_logits), want_grads = _model_loss(cfg, params, targets, segment_ids, positions)
  fused_cfg = tiny_lm.config(remat_policy=remat_policy, attention_impl=implementation)
  (got, got_logits), got_grads = _model_loss(fused_cfg, params, targets, segment_ids, positions)
  assert np.all(np.isfinite(got_logits))
  real = np.asarray(targets > 0)
  np.testing.assert_allclose(np.asarray(got_logits)[real], np.asarray(want_logits)[real], **TOL)
  np.testing.assert_allclose(got, want, **TOL)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, **TOL), got_grads, want_grads)
  if implementation == "cudnn":  # causal + a segment mask: no row lengths for packed rows
    assert calls and all(c["is_causal"] and c["mask"] is not None for c in calls)


def test_decoder_only_lm_cudnn_matches_einsum_on_padded_unpacked_batch(cudnn_on_cpu):
  targets = _unpacked_targets()
  params = tiny_lm.params_for(tiny_lm.TINY)
  (want, _), want_grads = _model_loss(tiny_lm.TINY, params, targets, None, None)
  cfg = tiny_lm.config(attention_impl="cudnn")
  (got, _), got_grads = _model_loss(cfg, params, targets, None, None)
  np.testing.assert_allclose(got, want, **TOL)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, **TOL), got_grads, want_grads)
  assert cudnn_on_cpu and all(  # the fused padding-causal mask, no dense mask
      c["is_causal"] and "mask" not in c and c["key_value_seq_lengths"] is not None
      for c in cudnn_on_cpu
  )


def test_pallas_model_decodes_with_a_cache():
  """KV-cache decoding has no fused kernel: it runs the einsum path, with the same logits."""
  tokens = jnp.asarray([[4, 8, 15, 16, 23, 29, 3, 5]])
  params = tiny_lm.params_for(tiny_lm.TINY)
  logits = {}
  for impl in ("einsum", "pallas"):
    module = dense.DecoderOnlyLM(tiny_lm.config(attention_impl=impl))
    cache = module.init(jax.random.PRNGKey(0), tokens, tokens, decode=True)["cache"]
    logits[impl], _ = module.apply(
        {"params": params, "cache": cache},
        tokens[:, :1],
        tokens[:, :1],
        decode=True,
        mutable=["cache"],
    )
  np.testing.assert_allclose(logits["pallas"], logits["einsum"], **TOL)


def test_pallas_refuses_what_it_cannot_do():
  with pytest.raises(ConfigError, match="position_encoding"):
    tiny_lm.config(attention_impl="pallas", position_encoding="relative_bias")
  tokens = jnp.ones((1, 8), jnp.int32)
  module = dense.DecoderOnlyLM(tiny_lm.config(attention_impl="pallas"))
  with pytest.raises(ConfigError, match="prefix-LM"):
    module.init(jax.random.PRNGKey(0), tokens, tokens, None, None, tokens)
  encdec = dense.EncoderDecoder(tiny_lm.config(attention_impl="pallas"))
  with pytest.raises(ConfigError, match="encoder-decoder"):
    encdec.init(jax.random.PRNGKey(0), tokens, tokens, tokens)
