"""T5 relative position biases: buckets vs a plain-Python formula; cached decoding with them."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo import dense
from model_zoo.layers import relative_position
from tests.model_zoo import tiny_lm


def python_bucket(relative, bidirectional, num_buckets, max_distance):
  """The T5 paper's bucketing, one integer at a time."""
  n = -relative
  bucket = 0
  if bidirectional:
    num_buckets //= 2
    if n < 0:
      bucket += num_buckets
    n = abs(n)
  else:
    n = max(n, 0)
  max_exact = num_buckets // 2
  if n < max_exact:
    return bucket + n
  large = max_exact + int(
      math.log(n / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
  )
  return bucket + min(large, num_buckets - 1)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_buckets_match_the_formula(bidirectional):
  relative = np.arange(-300, 301)
  got = np.asarray(
      relative_position.relative_position_bucket(
          jnp.asarray(relative), bidirectional=bidirectional, num_buckets=32, max_distance=128
      )
  )
  want = [python_bucket(int(r), bidirectional, 32, 128) for r in relative]
  np.testing.assert_array_equal(got, want)
  assert got.max() == 31  # the last bucket holds every distance beyond max_distance
  assert got.min() == 0


def test_bias_is_the_table_entry_of_each_pairs_bucket():
  module = relative_position.RelativePositionBiases(num_heads=3, num_buckets=8, max_distance=16)
  params = module.init(jax.random.PRNGKey(0), 5, 6, bidirectional=True)
  bias = np.asarray(module.apply(params, 5, 6, bidirectional=True))
  table = np.asarray(jax.tree.leaves(params)[0])
  assert bias.shape == (1, 3, 5, 6)
  for i in range(5):
    for j in range(6):
      np.testing.assert_array_equal(bias[0, :, i, j], table[:, python_bucket(j - i, True, 8, 16)])


def _relpos(cfg):
  return dataclasses.replace(cfg, position_encoding="relative_bias")


@pytest.mark.slow
@pytest.mark.parametrize("scan_layers", [True, False])
def test_decoder_only_cached_decoding_with_relative_bias_equals_full_forward(scan_layers):
  cfg = _relpos(tiny_lm.config(scan_layers=scan_layers))
  module = dense.DecoderOnlyLM(cfg)
  tokens = jnp.asarray(np.random.default_rng(1).integers(1, cfg.vocab_size, size=(2, 6)))
  params = module.init(jax.random.PRNGKey(0), tokens, tokens)["params"]
  assert "relpos_bias" in params["decoder"]
  full = np.asarray(module.apply({"params": params}, tokens, tokens))
  _, state = module.apply(
      {"params": params}, tokens, tokens, decode=True, max_decode_length=6, mutable=["cache"]
  )
  cache, steps = state["cache"], []
  for t in range(6):
    logits, state = module.apply(
        {"params": params, "cache": cache},
        tokens[:, t : t + 1],
        tokens[:, t : t + 1],
        decode=True,
        max_decode_length=6,
        mutable=["cache"],
    )
    cache = state["cache"]
    steps.append(np.asarray(logits[:, 0]))
  np.testing.assert_allclose(np.stack(steps, 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_encoder_decoder_cached_decoding_with_relative_bias_equals_full_forward():
  cfg = _relpos(tiny_lm.config(scan_layers=True))
  module = dense.EncoderDecoder(cfg)
  rng = np.random.default_rng(2)
  enc = jnp.asarray(rng.integers(1, cfg.vocab_size, size=(2, 5)))
  dec = jnp.asarray(rng.integers(1, cfg.vocab_size, size=(2, 4)))
  params = module.init(jax.random.PRNGKey(0), enc, dec, dec)["params"]
  assert "relpos_bias" in params["encoder"] and "relpos_bias" in params["decoder"]
  full = np.asarray(module.apply({"params": params}, enc, dec, dec))
  encoded = module.apply({"params": params}, enc, method="encode")
  _, state = module.apply(
      {"params": params},
      encoded,
      enc,
      dec,
      dec,
      decode=True,
      max_decode_length=4,
      mutable=["cache"],
      method="decode",
  )
  cache, steps = state["cache"], []
  for t in range(4):
    logits, state = module.apply(
        {"params": params, "cache": cache},
        encoded,
        enc,
        dec[:, t : t + 1],
        dec[:, t : t + 1],
        decode=True,
        max_decode_length=4,
        mutable=["cache"],
        method="decode",
    )
    cache = state["cache"]
    steps.append(np.asarray(logits[:, 0]))
  np.testing.assert_allclose(np.stack(steps, 1), full, rtol=1e-5, atol=1e-5)
  # The biases matter: zeroing them changes the output.
  zeroed = jax.tree_util.tree_map_with_path(
      lambda p, x: jnp.zeros_like(x) if "relpos_bias" in jax.tree_util.keystr(p) else x, params
  )
  assert not np.allclose(
      np.asarray(module.apply({"params": zeroed}, enc, dec, dec)), full, atol=1e-4
  )
