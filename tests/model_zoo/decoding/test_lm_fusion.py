"""`ShallowFusion`, the decoder a run config names: a language model beside the decoded model
in beam search, each hypothesis scored log p(y | x) + lambda log p_LM(y) + beta |y|.

References are full forwards of each model on its own (tests/model_zoo/decoding/common.py):
the decoded model given its encoder input, the LM from BOS with no prompt.
"""

import jax
import numpy as np
import pytest

from model_zoo.decoding import beam_search, controlled, lm_fusion
from model_zoo.errors import ConfigError
from tests.model_zoo.decoding import common

BEAM = beam_search.BeamSearch(beam_size=3, alpha=0.0)


def _lm(vocab_config=common.V16):
  model = common.decoder_only(vocab_config)
  return model, common.random_params(model, 31, emb_scale=1.5, eos_scale=2.0)


def _fused(weight, bonus=0.0, lm=None):
  model, params = lm or _lm()
  return lm_fusion.ShallowFusion(
      lm=lm_fusion.FusedLM(model, params, weight), decoder=BEAM, length_bonus=bonus
  )


def _predict(model, params, batch, decoder):
  """Every decode, best first: [B, K, L] and [B, K] (a fused decoder holds arrays, so it is
  not a key of common.predict_fn's cache)."""
  run = jax.jit(lambda p, b: model.predict_batch(p, b, decoder=decoder, return_all_decodes=True))
  return tuple(np.asarray(x) for x in run(params, batch))


def test_lambda_and_beta_zero_decode_as_beam_search_alone():
  model, batch, params = common.ed16()
  plain = common.predict(model, params, batch, BEAM)
  fused = _predict(model, params, batch, _fused(0.0))
  np.testing.assert_array_equal(fused[0], plain[0])
  np.testing.assert_allclose(fused[1], plain[1], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("weight,bonus", [(0.7, 0.0), (0.7, 0.4), (2.0, -0.3)])
def test_each_hypothesis_scores_the_fused_formula(weight, bonus):
  model, batch, params = common.ed16()
  lm, lm_params = _lm()
  sequences, scores = _predict(model, params, batch, _fused(weight, bonus, (lm, lm_params)))
  rows, beams, length = sequences.shape
  flat = sequences.reshape(rows * beams, length)
  generated = common.generated_length(flat)
  start, stop = np.zeros_like(generated), generated
  expanded = {k: np.repeat(np.asarray(v), beams, axis=0) for k, v in batch.items()}
  asr = common.sequence_log_probs(model, params, expanded, flat, start, stop)
  lm_batch = common.decoder_only_batch([[]] * len(flat), length)
  lm_scores = common.sequence_log_probs(lm, lm_params, lm_batch, flat, start, stop)
  expected = asr + weight * lm_scores + bonus * generated
  np.testing.assert_allclose(scores.reshape(-1), expected, rtol=1e-4, atol=1e-4)
  # The LM has a say: these hypotheses are not the decoded model's own best ones.
  assert not np.array_equal(sequences, common.predict(model, params, batch, BEAM)[0])


@pytest.mark.slow
def test_the_lm_params_are_the_decoders_own_and_can_be_passed_in():
  model, batch, params = common.ed16()
  fusion = _fused(0.7, 0.2)
  assert controlled.decoder_params(fusion) is fusion.lm.params
  run = jax.jit(
      lambda lm_params: model.predict_batch(
          params, batch, decoder=controlled.with_decoder_params(fusion, lm_params)
      )
  )
  doubled = jax.tree.map(lambda p: 2 * p, fusion.lm.params)
  np.testing.assert_array_equal(
      run(fusion.lm.params)[0], model.predict_batch(params, batch, decoder=fusion)[0]
  )
  assert not np.array_equal(run(doubled)[0], run(fusion.lm.params)[0])


def test_a_negative_lambda_and_a_foreign_vocabulary_are_refused():
  lm, lm_params = _lm()
  with pytest.raises(ConfigError, match=r"FusedLM.weight=-0.5: lambda must be >= 0"):
    lm_fusion.FusedLM(lm, lm_params, -0.5)
  model, batch, params = common.ed16()
  foreign = _fused(0.5, lm=_lm(common.V5))  # 5 ids against the decoded model's 16
  with pytest.raises(ConfigError, match=r"the model has 16 ids and the LM 5"):
    model.predict_batch(params, batch, decoder=foreign)
