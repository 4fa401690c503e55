"""Attention masks vs brute-force Python loops (exact boolean equality)."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo.layers import masks


def _brute_decoder_mask(targets, segments=None, causal_attention=None):
  b, n = targets.shape
  out = np.zeros((b, 1, n, n), bool)
  for bi, i, j in itertools.product(range(b), range(n), range(n)):
    allowed = j <= i
    if causal_attention is not None and causal_attention[bi, i] > 0 and causal_attention[bi, j] > 0:
      allowed = True  # prefix-LM: inputs attend bidirectionally among themselves
    allowed = allowed and targets[bi, i] > 0 and targets[bi, j] > 0
    if segments is not None:
      allowed = allowed and segments[bi, i] == segments[bi, j]
    out[bi, 0, i, j] = allowed
  return out


def _brute_bidirectional(q_tokens, kv_tokens, q_seg=None, kv_seg=None):
  b, t = q_tokens.shape
  s = kv_tokens.shape[1]
  out = np.zeros((b, 1, t, s), bool)
  for bi, i, j in itertools.product(range(b), range(t), range(s)):
    allowed = q_tokens[bi, i] > 0 and kv_tokens[bi, j] > 0
    if q_seg is not None and kv_seg is not None:
      allowed = allowed and q_seg[bi, i] == kv_seg[bi, j]
    out[bi, 0, i, j] = allowed
  return out


# Two packed rows: segments with padding at the end, prefix-LM inputs marked per segment.
TARGETS = np.array([[5, 3, 7, 2, 9, 4, 0, 0], [1, 1, 2, 3, 5, 8, 13, 0]])
SEGMENTS = np.array([[1, 1, 1, 2, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0]])
CAUSAL_ATTENTION = np.array([[1, 1, 0, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]])


@pytest.mark.parametrize("use_segments", [False, True])
@pytest.mark.parametrize("use_prefix", [False, True])
def test_decoder_self_attention_mask(use_segments, use_prefix):
  seg = SEGMENTS if use_segments else None
  pre = CAUSAL_ATTENTION if use_prefix else None
  got = masks.decoder_self_attention_mask(
      jnp.asarray(TARGETS),
      None if seg is None else jnp.asarray(seg),
      None if pre is None else jnp.asarray(pre),
  )
  expected = _brute_decoder_mask(TARGETS, seg, pre)
  assert got.shape == (2, 1, 8, 8) and got.dtype == jnp.bool_
  np.testing.assert_array_equal(np.asarray(got), expected)


def test_prefix_lm_mask_is_bidirectional_only_inside_the_prefix():
  got = np.asarray(
      masks.decoder_self_attention_mask(
          jnp.asarray(TARGETS[1:]), None, jnp.asarray(CAUSAL_ATTENTION[1:])
      )
  )[0, 0]
  assert got[0, 2] and got[1, 2]  # prefix position 0 sees prefix position 2 (a future position)
  assert not got[0, 3] and not got[2, 4]  # but no prefix position sees a target position
  assert not got[3, 4] and got[4, 3]  # targets stay causal


def test_bidirectional_mask_self_and_cross():
  rng = np.random.default_rng(0)
  q = rng.integers(0, 4, size=(2, 5))
  kv = rng.integers(0, 4, size=(2, 7))
  q_seg = rng.integers(1, 3, size=(2, 5))
  kv_seg = rng.integers(1, 3, size=(2, 7))
  np.testing.assert_array_equal(
      np.asarray(masks.bidirectional_mask(jnp.asarray(q), jnp.asarray(kv))),
      _brute_bidirectional(q, kv),
  )
  np.testing.assert_array_equal(
      np.asarray(
          masks.bidirectional_mask(
              jnp.asarray(q), jnp.asarray(kv), jnp.asarray(q_seg), jnp.asarray(kv_seg)
          )
      ),
      _brute_bidirectional(q, kv, q_seg, kv_seg),
  )
  np.testing.assert_array_equal(
      np.asarray(
          masks.bidirectional_mask(
              jnp.asarray(TARGETS),
              jnp.asarray(TARGETS),
              jnp.asarray(SEGMENTS),
              jnp.asarray(SEGMENTS),
          )
      ),
      _brute_bidirectional(TARGETS, TARGETS, SEGMENTS, SEGMENTS),
  )


def test_causal_mask():
  got = np.asarray(masks.causal_mask(4))
  assert got.shape == (1, 1, 4, 4)
  np.testing.assert_array_equal(got[0, 0], [[i >= j for j in range(4)] for i in range(4)])
