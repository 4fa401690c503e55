"""Sampling draws from the tempered, top-k / top-p filtered, renormalised model distribution.

One decoding step of N identical rows gives N independent draws from the first-step
distribution; their counts are compared (chi-square) with a NumPy reference built from a
full forward's log-probs. The filters follow model_zoo/decoding/filters.py's contract:
temperature, then top-k (ties at the k-th value kept), renormalise, then top-p (a token
is kept iff the probability mass strictly before it, in descending order, is below p).
"""

import jax
import numpy as np
import pytest
from scipy import stats

from tests.model_zoo.decoding import common
from model_zoo.decoding import filters, sampling

N = 20_000
P_MIN = 1e-3
VOCAB = common.V16.vocab_size


@pytest.fixture(scope="module")
def first_step():
  """A decoder-only model, its params and the float64 log-probs of its first token."""
  model, _, params = common.lm16()
  batch = common.decoder_only_batch([[]], 1)
  log_probs = common.full_forward_log_probs(model, params, batch, np.zeros((1, 1), np.int32))[0, 0]
  return model, params, log_probs


def expected_distribution(log_probs, temperature=1.0, top_k=0, top_p=1.0) -> np.ndarray:
  p = np.exp(common.log_softmax(np.asarray(log_probs, np.float64) / temperature))
  if 0 < top_k < len(p):
    p = np.where(p >= np.sort(p)[-top_k], p, 0.0)
    p = p / p.sum()
  if top_p < 1.0:
    order = np.argsort(-p, kind="stable")
    mass_before = np.cumsum(p[order]) - p[order]
    keep = np.zeros(len(p), bool)
    keep[order[mass_before < top_p]] = True
    p = np.where(keep, p, 0.0)
    p = p / p.sum()
  return p


def _draw(model, params, decoder, seed=0):
  """N first tokens drawn by `decoder` through Model.predict_batch (a length-1 decode)."""
  batch = {
      "decoder_input_tokens": np.zeros((N, 1), np.int32),
      "decoder_target_tokens": np.ones((N, 1), np.int32),
  }
  tokens, scores = common.predict(model, params, batch, decoder, seed)
  return tokens[:, 0, 0], scores[:, 0]


SETTINGS = {
    "t1": dict(temperature=1.0),
    "t0.5": dict(temperature=0.5),
    "t2": dict(temperature=2.0),
    "top_k3": dict(top_k=3),
    "top_p0.6": dict(top_p=0.6),
    "top_k6_top_p0.6_t1.5": dict(temperature=1.5, top_k=6, top_p=0.6),
}
# Through the whole decoder (each setting is one more compilation of the decode loop).
DECODER_SETTINGS = ["t1", "top_p0.6", "top_k6_top_p0.6_t1.5"]


def _check_counts(counts, log_probs, setting):
  expected = expected_distribution(log_probs, **setting)
  support = expected > 0
  if "top_k" in setting or "top_p" in setting:  # the filter really removes tokens
    assert 2 <= support.sum() < VOCAB
  assert counts.sum() == N
  # Never outside the top-k set / the nucleus computed here.
  assert counts[~support].sum() == 0, (counts, expected)
  test = stats.chisquare(counts[support], N * expected[support])
  assert test.pvalue > P_MIN, (counts, N * expected)
  # The test has power: the unfiltered, untempered distribution is rejected.
  if setting != {"temperature": 1.0}:
    assert stats.chisquare(counts, N * np.exp(log_probs)).pvalue < P_MIN


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_filtered_distribution_samples_follow_the_numpy_reference(first_step, name):
  """filters.sampling_distribution + jax.random.categorical, as Sampling draws a token."""
  _, _, log_probs = first_step
  rows = np.broadcast_to(log_probs.astype(np.float32), (N, VOCAB))
  logits = filters.sampling_distribution(
      rows, **{"temperature": 1.0, "top_k": 0, "top_p": 1.0, **SETTINGS[name]}
  )
  tokens = np.asarray(jax.random.categorical(jax.random.PRNGKey(1), logits, axis=-1))
  _check_counts(np.bincount(tokens, minlength=VOCAB), log_probs, SETTINGS[name])


@pytest.mark.parametrize("name", DECODER_SETTINGS)
def test_one_step_decoder_samples_follow_the_filtered_distribution(first_step, name):
  model, params, log_probs = first_step
  tokens, scores = _draw(model, params, sampling.Sampling(**SETTINGS[name]))
  _check_counts(np.bincount(tokens, minlength=VOCAB), log_probs, SETTINGS[name])
  # Each score is the untempered, unfiltered log-prob of the drawn token.
  np.testing.assert_allclose(scores, log_probs[tokens], rtol=1e-5, atol=1e-5)


def test_samples_depend_on_the_rng_only(first_step):
  model, params, _ = first_step
  decoder = sampling.Sampling(**SETTINGS["t1"])
  a, _ = _draw(model, params, decoder, seed=1)
  b, _ = _draw(model, params, decoder, seed=1)
  c, _ = _draw(model, params, decoder, seed=2)
  np.testing.assert_array_equal(a, b)
  assert np.mean(a != c) > 0.2


def test_temperature_zero_is_greedy():
  """Filters are ignored at temperature 0, and so is the rng."""
  model, batch, params = common.ed16()
  rows = len(batch["encoder_input_tokens"])
  expected, expected_scores = common.greedy_reference(
      model, params, batch, np.zeros(rows, int), common.ED_LENGTH
  )
  decoder = sampling.Sampling(temperature=0.0, top_k=2, top_p=0.5)
  for seed in (0, 1):
    sequences, scores = common.predict(model, params, batch, decoder, seed)
    np.testing.assert_array_equal(sequences[:, 0], expected)
    np.testing.assert_allclose(scores[:, 0], expected_scores, rtol=1e-5, atol=1e-5)


def test_num_decodes_returns_that_many_samples_best_first_with_their_log_probs():
  model, batch, params = common.ed16()
  rows, length = batch["decoder_target_tokens"].shape
  decoder = sampling.Sampling(temperature=1.5, top_k=8, num_decodes=4)
  sequences, scores = common.predict(model, params, batch, decoder, seed=3)
  assert sequences.shape == (rows, 4, length) and scores.shape == (rows, 4)
  assert np.all(np.diff(scores, axis=1) <= 0)  # best first
  assert all(len({tuple(s) for s in sequences[r]}) > 1 for r in range(rows))  # really sampled
  # Each score: the sum of its tokens' (untempered) log-probs up to EOS, by a full forward.
  flat = sequences.reshape(rows * 4, length)
  repeated = {k: np.repeat(v, 4, axis=0) for k, v in batch.items()}
  expected = common.sequence_log_probs(
      model, params, repeated, flat, np.zeros(rows * 4, int), common.generated_length(flat)
  )
  np.testing.assert_allclose(scores.reshape(-1), expected, rtol=1e-4, atol=1e-4)
  # After EOS a row is all zeros.
  for seq in flat:
    assert not seq[common.generated_length(seq[None])[0] :].any()
