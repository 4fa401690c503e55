"""KV-cache decoding equals the full causal forward (fp32, tolerance 1e-5).

Convention under test (attention.Attention docstring, T5X): a first `decode=True` call on
full-length inputs creates a zero cache of that length; later calls append their chunk at
`cache_index` and attend causally over everything cached so far.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from model_zoo import dense
from tests.model_zoo import tiny_lm

TOL = dict(rtol=1e-5, atol=1e-5)
LENGTH = 7
TOKENS = jnp.asarray(
    np.random.default_rng(0).integers(1, tiny_lm.TINY.vocab_size, size=(2, LENGTH))
)


@functools.lru_cache(maxsize=None)
def _lm(scan_layers, remat_policy="none"):
  cfg = tiny_lm.config(scan_layers=scan_layers, remat_policy=remat_policy)
  module = dense.DecoderOnlyLM(cfg)
  params = tiny_lm.params_for(cfg)
  full = jax.jit(lambda p, t: module.apply({"params": p}, t, t))
  create = jax.jit(lambda p, t: module.apply({"params": p}, t, t, decode=True, mutable=["cache"]))
  step = jax.jit(
      lambda p, c, t: module.apply({"params": p, "cache": c}, t, t, decode=True, mutable=["cache"])
  )
  return cfg, params, full, create, step


def _decode_in_chunks(scan_layers, chunks, remat_policy="none"):
  cfg, params, _, create, step = _lm(scan_layers, remat_policy)
  _, variables = create(params, TOKENS)
  cache = variables["cache"]
  outs, t = [], 0
  for size in chunks:
    logits, variables = step(params, cache, TOKENS[:, t : t + size])
    cache = variables["cache"]
    assert logits.shape == (2, size, cfg.vocab_size)
    outs.append(np.asarray(logits))
    t += size
  return np.concatenate(outs, axis=1), cache


@pytest.mark.parametrize("scan_layers", [True, False])
def test_cache_shapes_and_index(scan_layers):
  cfg, params, _, create, _ = _lm(scan_layers)
  _, variables = create(params, TOKENS)
  cache = variables["cache"]["decoder"]
  if scan_layers:
    attn = cache["layers"]["self_attention"]
    kv_shape = (cfg.num_layers, 2, LENGTH, cfg.num_kv_heads, cfg.head_dim)
    np.testing.assert_array_equal(
        np.asarray(attn["cache_index"]), np.zeros((cfg.num_layers, 2))
    )  # per row
  else:
    assert set(cache) == {f"layers_{i}" for i in range(cfg.num_layers)}
    attn = cache["layers_0"]["self_attention"]
    kv_shape = (2, LENGTH, cfg.num_kv_heads, cfg.head_dim)
    np.testing.assert_array_equal(np.asarray(attn["cache_index"]), np.zeros(2))  # per row
  assert attn["cached_key"].shape == kv_shape and attn["cached_value"].shape == kv_shape
  assert not np.any(np.asarray(attn["cached_key"]))  # created zero
  _, cache = _decode_in_chunks(scan_layers, [3, 1])
  attn = cache["decoder"]["layers" if scan_layers else "layers_1"]["self_attention"]
  assert np.all(np.asarray(attn["cache_index"]) == 4)


@pytest.mark.parametrize("scan_layers", [True, False])
@pytest.mark.parametrize("chunks", [[1] * LENGTH, [3, 1, 1, 1, 1]], ids=["one_by_one", "prefill3"])
def test_incremental_decoding_matches_full_forward(scan_layers, chunks):
  _, params, full, _, _ = _lm(scan_layers)
  expected = np.asarray(full(params, TOKENS))
  assert sum(chunks) == LENGTH
  got, _ = _decode_in_chunks(scan_layers, chunks)
  np.testing.assert_allclose(got, expected, **TOL)


def test_incremental_decoding_with_full_remat_config():
  _, params, full, _, _ = _lm(True)
  expected = np.asarray(full(params, TOKENS))
  got, _ = _decode_in_chunks(True, [3, 1, 1, 1, 1], remat_policy="full")
  np.testing.assert_allclose(got, expected, **TOL)


def test_cache_creating_call_returns_the_causal_forward():
  """The first decode=True call (which creates the cache) should return the ordinary causal
  forward, not a forward in which every token sees the whole sequence."""
  _, params, full, create, _ = _lm(True)
  logits, _ = create(params, TOKENS)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(full(params, TOKENS)), **TOL)


# ---- encoder-decoder --------------------------------------------------------------------
ENC = jnp.asarray([[3, 9, 4, 12, 0], [8, 2, 6, 0, 0]])  # with padding
DEC_TARGETS = jnp.asarray(
    np.random.default_rng(1).integers(1, tiny_lm.TINY.vocab_size, size=(2, 6))
)
DEC_INPUTS = jnp.concatenate([jnp.zeros((2, 1), DEC_TARGETS.dtype), DEC_TARGETS[:, :-1]], axis=1)


@functools.lru_cache(maxsize=None)
def _encdec(scan_layers):
  cfg = tiny_lm.config(scan_layers=scan_layers)
  module = dense.EncoderDecoder(cfg)
  params = meta.unbox(jax.jit(module.init)(jax.random.PRNGKey(0), ENC, DEC_INPUTS, DEC_TARGETS))[
      "params"
  ]
  expected = np.asarray(
      jax.jit(lambda p: module.apply({"params": p}, ENC, DEC_INPUTS, DEC_TARGETS))(params)
  )
  encoded = jax.jit(lambda p: module.apply({"params": p}, ENC, method="encode"))(params)
  assert encoded.shape == (2, ENC.shape[1], cfg.emb_dim)
  create = jax.jit(
      lambda p: module.apply(
          {"params": p},
          encoded,
          ENC,
          DEC_INPUTS,
          DEC_TARGETS,
          decode=True,
          mutable=["cache"],
          method="decode",
      )
  )
  step = jax.jit(
      lambda p, c, t: module.apply(
          {"params": p, "cache": c},
          encoded,
          ENC,
          t,
          t,
          decode=True,
          mutable=["cache"],
          method="decode",
      )
  )
  return params, expected, create, step


@pytest.mark.parametrize("chunks", [[1] * 6, [3, 1, 1, 1]], ids=["one_by_one", "prefill3"])
def test_encoder_decoder_incremental_decoding_matches_full_forward(chunks):
  params, expected, create, step = _encdec(True)
  _, variables = create(params)
  cache, outs, t = variables["cache"], [], 0
  for size in chunks:
    logits, variables = step(params, cache, DEC_INPUTS[:, t : t + size])
    cache = variables["cache"]
    outs.append(np.asarray(logits))
    t += size
  assert t == DEC_TARGETS.shape[1]
  np.testing.assert_allclose(np.concatenate(outs, axis=1), expected, **TOL)
