"""Stepping `decode_inputs(...).tokens_to_logits` through a sequence equals one full forward
(after a prompt: from where the prompt ends).

Also for shallow fusion of two different models: the fused step's scores are
log_softmax(primary) + w * log_softmax(other) of the two full forwards, the fused cache
reorders both models' rows, and a fused greedy decode equals a NumPy greedy loop over the
fused full-forward log-probs.
"""

import functools

import jax
import numpy as np
import pytest
from jax import lax

from tests.model_zoo.decoding import common
from model_zoo.decoding import fusion, sampling

LENGTH = 6
TOL = dict(rtol=1e-5, atol=1e-5)
FUSION_WEIGHT = 0.7


def _steps(inputs, cache, tokens):
  """Feeds tokens [rows, T] one per step through inputs.tokens_to_logits: cache, [rows, T, V]."""

  def step(cache, token):
    logits, cache = inputs.tokens_to_logits(token[:, None], cache)
    return cache, logits

  cache, logits = lax.scan(step, cache, tokens.T)
  return cache, logits.transpose(1, 0, 2)


@functools.lru_cache(maxsize=None)
def _stepped_logits_fn(model):
  """(params, batch) -> [rows, L, V]: the cache from decode_inputs, fed one input token a step."""

  def run(params, batch):
    inputs = model.decode_inputs(params, batch)
    return _steps(inputs, inputs.cache, batch["decoder_input_tokens"])[1]

  return jax.jit(run)


def _training_batch(targets, encoder_tokens=None, prefix_lengths=None):
  """A training-style batch over `targets` (all nonzero, so no position is padding)."""
  batch = {"decoder_input_tokens": common.shift_right(targets), "decoder_target_tokens": targets}
  if encoder_tokens is not None:
    batch["encoder_input_tokens"] = encoder_tokens
  if prefix_lengths is not None:
    batch["decoder_causal_attention"] = (
        np.arange(targets.shape[1])[None, :] <= np.asarray(prefix_lengths)[:, None]
    ).astype(np.int32)
  return batch


@pytest.mark.parametrize("kind", ["decoder_only", "encoder_decoder"])
def test_cached_steps_equal_the_full_forward_at_every_position(kind):
  if kind == "decoder_only":
    model, _, params = common.lm16()
    encoder = None
  else:
    model, ed_batch, params = common.ed16()
    encoder = ed_batch["encoder_input_tokens"]
  rows = 8
  targets = np.random.RandomState(1).randint(1, 16, size=(rows, LENGTH)).astype(np.int32)
  batch = _training_batch(targets, encoder)
  expected = np.asarray(common.jitted_logits(model)(params, batch))
  # Positions really differ (a cache that ignored the past would not pass).
  assert np.abs(expected[:, 1:] - expected[:, :1]).max() > 0.1
  got = np.asarray(_stepped_logits_fn(model)(params, batch))
  assert got.shape == (rows, LENGTH, 16)
  np.testing.assert_allclose(got, expected, **TOL)


@functools.lru_cache(maxsize=None)
def _steps_after_prompt_fn(model):
  """(params, batch, tokens [rows, T]) -> first_token, room and [rows, T, V]: the cache from
  decode_inputs (the prompt prefilled), fed `tokens` one a step from where each prompt ends."""

  def run(params, batch, tokens):
    inputs = model.decode_inputs(params, batch)
    return inputs.first_token, inputs.max_new_tokens, _steps(inputs, inputs.cache, tokens)[1]

  return jax.jit(run)


def test_steps_after_a_prefix_lm_prompt_equal_the_prefix_lm_full_forward():
  """A prefix LM (decoder_causal_attention) attends bidirectionally within its prompt.

  decode_inputs prefills the prompt; the decoder's first step feeds the last prompt input at
  its own position and each later step the next input. The logits it generates from
  (positions >= prompt length) must be the model's own, i.e. those of the full forward over
  the same batch, in which the prompt positions see each other.
  """
  model, _, params = common.lm16()
  prompt_lengths = np.array([3, 1, 4, 2, 0, 5, 1, 2])
  targets = np.random.RandomState(8).randint(2, 16, size=(8, LENGTH)).astype(np.int32)
  batch = _training_batch(targets, prefix_lengths=prompt_lengths)
  expected = np.asarray(common.jitted_logits(model)(params, batch))
  # Step j of row n feeds input p_n + j (the first is the last prompt input); 0 past the end.
  position = prompt_lengths[:, None] + np.arange(LENGTH)[None, :]
  inside = position < LENGTH
  tokens = np.take_along_axis(batch["decoder_input_tokens"], np.minimum(position, LENGTH - 1), 1)
  tokens = np.where(inside, tokens, 0).astype(np.int32)
  first, room, got = jax.tree.map(np.asarray, _steps_after_prompt_fn(model)(params, batch, tokens))
  np.testing.assert_array_equal(first, tokens[:, 0])
  np.testing.assert_array_equal(room, LENGTH - prompt_lengths)
  generating = np.arange(LENGTH)[None, :] >= prompt_lengths[:, None]
  np.testing.assert_allclose(got[inside], expected[generating], **TOL)


# --- shallow fusion ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _fusion_setup():
  """An encoder-decoder fused with a different (1-layer, unscanned, relative-bias) LM."""
  primary = common.encoder_decoder(common.V5)
  other = common.decoder_only(
      common.V5,
      num_layers=1,
      num_heads=4,
      num_kv_heads=4,
      scan_layers=False,
      position_encoding="relative_bias",
  )
  encoder = np.random.RandomState(4).randint(2, 5, size=(4, 5)).astype(np.int32)
  encoder[0, 3:] = 0
  batch_a = common.encoder_decoder_batch(encoder, LENGTH)
  batch_b = common.decoder_only_batch([[]] * 4, LENGTH)
  return (
      primary,
      other,
      common.random_params(primary, 5),
      common.random_params(other, 6),
      batch_a,
      batch_b,
  )


def _fused_inputs(params_a, params_b, batch_a, batch_b):
  primary, other, *_ = _fusion_setup()
  return fusion.shallow_fusion(
      primary.decode_inputs(params_a, batch_a),
      [(other.decode_inputs(params_b, batch_b), FUSION_WEIGHT)],
  )


def _fused_reference(targets, batch_a=None):
  """log_softmax(primary) + w log_softmax(other) of the two full forwards, [rows, L, V]."""
  primary, other, params_a, params_b, default_batch_a, batch_b = _fusion_setup()
  batch_a = default_batch_a if batch_a is None else batch_a
  return common.full_forward_log_probs(
      primary, params_a, batch_a, targets
  ) + FUSION_WEIGHT * common.full_forward_log_probs(other, params_b, batch_b, targets)


def test_fused_step_is_the_weighted_sum_of_full_forward_log_softmaxes():
  *_, params_a, params_b, batch_a, batch_b = _fusion_setup()
  targets = np.random.RandomState(7).randint(1, 5, size=(4, LENGTH)).astype(np.int32)
  inputs_tokens = common.shift_right(targets)
  expected = _fused_reference(targets)

  @jax.jit
  def fused_steps(pa, pb, ba, bb, tokens, perm):
    """Three steps, then the fused cache reordered by `perm`, then the remaining steps."""
    inputs = _fused_inputs(pa, pb, ba, bb)
    cache, before = _steps(inputs, inputs.cache, tokens[:, :3])
    cache = inputs.reorder_cache(cache, perm)
    # The encoder output is not cached: the primary gets the permuted encoder rows.
    inputs = _fused_inputs(pa, pb, jax.tree.map(lambda x: x[perm], ba), bb)
    cache, after = _steps(inputs, cache, tokens[:, 3:])
    return jax.numpy.concatenate([before, after], axis=1), cache

  perm = np.array([3, 0, 0, 2])
  permuted_tokens = np.concatenate([inputs_tokens[:, :3], inputs_tokens[perm, 3:]], axis=1)
  fused, cache = fused_steps(params_a, params_b, batch_a, batch_b, permuted_tokens, perm)
  fused = np.asarray(fused)
  assert isinstance(cache, tuple) and len(cache) == 2
  np.testing.assert_allclose(fused[:, :3], expected[:, :3], **TOL)
  # After the reorder, row i continues row perm[i] of both models.
  expected_permuted = _fused_reference(targets[perm], {k: v[perm] for k, v in batch_a.items()})
  np.testing.assert_allclose(fused[:, 3:], expected_permuted[:, 3:], **TOL)


def test_fused_greedy_equals_numpy_greedy_over_fused_full_forwards():
  primary, _, params_a, params_b, batch_a, batch_b = _fusion_setup()

  @jax.jit
  def decode(pa, pb, ba, bb):
    return sampling.greedy()(
        _fused_inputs(pa, pb, ba, bb), rng=jax.random.PRNGKey(0), eos_id=common.EOS
    )

  sequences, scores = decode(params_a, params_b, batch_a, batch_b)
  rows = len(batch_a["encoder_input_tokens"])
  # Decoders renormalise the fused scores (a log-softmax) before choosing and scoring.
  expected, expected_scores = common.greedy_reference(
      None,
      None,
      {},
      np.zeros(rows, int),
      LENGTH,
      step_log_probs=lambda targets: common.log_softmax(_fused_reference(targets)),
  )
  np.testing.assert_array_equal(np.asarray(sequences)[:, 0], expected)
  np.testing.assert_allclose(np.asarray(scores)[:, 0], expected_scores, **TOL)
  # Fusion changes the decode: the primary model alone picks differently somewhere.
  alone, _ = common.greedy_reference(primary, params_a, batch_a, np.zeros(rows, int), LENGTH)
  assert not np.array_equal(alone, expected)


def test_fusing_models_with_different_vocabularies_is_rejected():
  small, large = common.decoder_only(common.V5), common.decoder_only(common.V16)
  batch = common.decoder_only_batch([[]] * 2, 4)
  params_small, params_large = common.random_params(small, 0), common.random_params(large, 0)

  def fused_step():
    inputs = fusion.shallow_fusion(
        small.decode_inputs(params_small, batch), [(large.decode_inputs(params_large, batch), 0.5)]
    )
    return inputs.tokens_to_logits(np.zeros((2, 1), np.int32), inputs.cache)

  with pytest.raises(ValueError, match="one vocabulary"):
    jax.eval_shape(fused_step)
