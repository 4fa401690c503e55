"""Controlled decoding against closed forms computed from full forward passes in NumPy.

Token-wise CD must sample each token from p_base * exp(lambda V) / Z; on a 5-token vocabulary
and a 3-token horizon every output can be enumerated, so the sampled frequencies (chi-square)
and each sample's reported log-prob are compared with that product. Blockwise CD with blocks
of one token keeps, at every step, the best by value of K base draws: its step distribution
is the order statistic F(z)^K - F(z^-)^K over tokens sorted by value, enumerated the same
way. Reductions (lambda 0, K = 1, one block) must equal plain sampling or best-of-K exactly.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from model_zoo import prefix_scorer
from model_zoo.decoding import base, controlled, sampling
from model_zoo.errors import ConfigError
from tests.model_zoo.decoding import common

EOS = common.EOS


@functools.lru_cache(maxsize=None)
def scorer_model(cfg=common.V5, **overrides):
  module = prefix_scorer.PrefixScorerLM(dataclasses.replace(cfg, **overrides))
  return prefix_scorer.PrefixScorerModel(module)


def setup(cfg=common.V5):
  base_model = common.decoder_only(cfg)
  model = scorer_model(cfg)
  return base_model, common.random_params(base_model, 3), model, common.random_params(model, 4)


def predict(base_model, params, batch, decoder, seed=0):
  """jit(predict_batch) with the decoder's scorer parameters passed as arguments."""
  scorer_params = controlled.decoder_params(decoder)

  def run(params, scorer_params, batch, rng):
    decoder_here = controlled.with_decoder_params(decoder, scorer_params)
    return base_model.predict_batch(
        params, batch, rng, decoder=decoder_here, return_all_decodes=True
    )

  out = jax.jit(run)(params, scorer_params, batch, jax.random.PRNGKey(seed))
  return tuple(np.asarray(x) for x in out)


@functools.lru_cache(maxsize=None)
def values_fn(model):
  return jax.jit(lambda params, batch: model._apply({"params": params}, batch))


def full_values(model, params, batch, targets) -> np.ndarray:
  """Float64 values [rows, L, V] of a full forward of the scorer over `targets`."""
  targets = np.asarray(targets, np.int32)
  full = dict(batch)
  full["decoder_input_tokens"] = common.shift_right(targets)
  full["decoder_target_tokens"] = np.ones_like(targets)
  full.pop("decoder_causal_attention", None)
  return np.asarray(values_fn(model)(params, full), np.float64)


def continuation_table(base_model, base_params, model, params, length):
  """Every continuation of an empty prompt with per-step base log-probs and values."""
  outputs = common.all_continuations(5, length)
  batch = common.decoder_only_batch([[]] * len(outputs), length)
  log_probs = common.full_forward_log_probs(base_model, base_params, batch, outputs)
  values = full_values(model, params, batch, outputs)
  return outputs, log_probs, values


def enumerate_probabilities(outputs, step_distribution):
  """P(output) = product over its generated tokens of step_distribution(row, t)[token]."""
  lengths = common.generated_length(outputs)
  probs = np.ones(len(outputs))
  for row, output in enumerate(outputs):
    for t in range(lengths[row]):
      probs[row] *= step_distribution(row, t)[output[t]]
  return probs


def chi_square_p(samples, outputs, probs) -> float:
  index = {tuple(o): i for i, o in enumerate(outputs)}
  counts = np.zeros(len(outputs))
  for s in samples:
    counts[index[tuple(s)]] += 1
  expected = probs * len(samples)
  keep = expected >= 5
  assert counts[expected == 0].sum() == 0  # nothing impossible was drawn
  observed, expected_kept = counts[keep], expected[keep]
  if expected[~keep].sum() > 0:  # the rare outputs, lumped into one bin
    observed = np.append(observed, counts[~keep].sum())
    expected_kept = np.append(expected_kept, expected[~keep].sum())
  return stats.chisquare(observed, expected_kept * observed.sum() / expected_kept.sum()).pvalue


N = 6000
LENGTH = 3


def test_tokenwise_cd_samples_the_closed_form_and_reports_its_log_probs():
  base_model, base_params, model, params = setup()
  lam = 1.5
  outputs, log_probs, values = continuation_table(base_model, base_params, model, params, LENGTH)

  def step(row, t):
    logits = log_probs[row, t] + lam * values[row, t]
    return np.exp(common.log_softmax(logits))

  probs = enumerate_probabilities(outputs, step)
  assert probs.sum() == pytest.approx(1.0, abs=1e-9)
  decoder = controlled.TokenwiseCD(scorers=[controlled.PrefixScorer(model, params, lam)])
  batch = common.decoder_only_batch([[]] * N, LENGTH)
  samples, scores = predict(base_model, base_params, batch, decoder)
  assert chi_square_p(samples[:, 0], outputs, probs) > 1e-3
  index = {tuple(o): i for i, o in enumerate(outputs)}
  expected_scores = np.log([probs[index[tuple(s)]] for s in samples[:64, 0]])
  np.testing.assert_allclose(scores[:64, 0], expected_scores, atol=2e-4)
  # The control moved the distribution: base sampling has another one.
  base_probs = enumerate_probabilities(outputs, lambda row, t: np.exp(log_probs[row, t]))
  assert np.abs(base_probs - probs).sum() > 0.2


def test_multi_objective_adds_weighted_values():
  base_model, base_params, model, params = setup()
  other = common.random_params(model, 5)
  outputs, log_probs, values = continuation_table(base_model, base_params, model, params, 2)
  _, _, other_values = continuation_table(base_model, base_params, model, other, 2)

  def step(row, t):
    logits = log_probs[row, t] + 0.7 * values[row, t] + 1.3 * other_values[row, t]
    return np.exp(common.log_softmax(logits))

  probs = enumerate_probabilities(outputs, step)
  decoder = controlled.TokenwiseCD(
      scorers=[
          controlled.PrefixScorer(model, params, 0.7),
          controlled.PrefixScorer(model, other, 1.3),
      ]
  )
  batch = common.decoder_only_batch([[]] * 32, 2)
  samples, scores = predict(base_model, base_params, batch, decoder)
  index = {tuple(o): i for i, o in enumerate(outputs)}
  expected = np.log([probs[index[tuple(s)]] for s in samples[:, 0]])
  np.testing.assert_allclose(scores[:, 0], expected, atol=2e-4)


def test_tokenwise_top_k_keeps_only_the_base_models_top_tokens():
  base_model, base_params, model, params = setup()
  outputs, log_probs, values = continuation_table(base_model, base_params, model, params, 2)

  def step(row, t):
    lp = log_probs[row, t]
    keep = lp >= np.sort(lp)[-2]
    return np.exp(common.log_softmax(np.where(keep, lp + 2.0 * values[row, t], -np.inf)))

  probs = enumerate_probabilities(outputs, step)
  decoder = controlled.TokenwiseCD(scorers=[controlled.PrefixScorer(model, params, 2.0)], top_k=2)
  batch = common.decoder_only_batch([[]] * N, 2)
  samples, _ = predict(base_model, base_params, batch, decoder)
  index = {tuple(o): i for i, o in enumerate(outputs)}
  assert all(probs[index[tuple(s)]] > 0 for s in samples[:, 0])
  assert chi_square_p(samples[:, 0], outputs, probs) > 1e-3


def test_blockwise_with_one_token_blocks_samples_the_order_statistic():
  base_model, base_params, model, params = setup()
  k, lam = 3, 0.8
  outputs, log_probs, values = continuation_table(base_model, base_params, model, params, 2)

  def step(row, t):
    p, v = np.exp(log_probs[row, t]), lam * values[row, t]
    order = np.argsort(v, kind="stable")  # ascending value; no ties with random weights
    cdf = np.cumsum(p[order])
    below = np.concatenate([[0.0], cdf[:-1]])
    out = np.zeros_like(p)
    out[order] = cdf**k - below**k  # P(the best of K draws is this token)
    return out

  probs = enumerate_probabilities(outputs, step)
  assert probs.sum() == pytest.approx(1.0, abs=1e-9)
  decoder = controlled.BlockwiseCD(
      scorers=[controlled.PrefixScorer(model, params, lam)], num_samples=k, block_length=1
  )
  batch = common.decoder_only_batch([[]] * (N // 2), 2)
  samples, scores = predict(base_model, base_params, batch, decoder)
  assert samples.shape == (N // 2, 1, 2)
  assert chi_square_p(samples[:, 0], outputs, probs) > 1e-3
  # Scored by the base model.
  index = {tuple(o): i for i, o in enumerate(outputs)}
  lengths = common.generated_length(samples[:16, 0])
  for row in range(16):
    i = index[tuple(samples[row, 0])]
    expected = sum(log_probs[i, t, samples[row, 0, t]] for t in range(lengths[row]))
    assert scores[row, 0] == pytest.approx(expected, abs=2e-4)


def test_one_block_keeps_the_sample_with_the_best_final_value():
  """A block longer than the decode: K base samples (the same draws as Sampling's), then the
  one whose value at its last generated token is highest."""
  base_model, batch, base_params = common.lm16()
  model = scorer_model(common.V16)
  params = common.random_params(model, 6)
  k = 4
  decoder = controlled.BlockwiseCD(
      scorers=[controlled.PrefixScorer(model, params, 1.0)], num_samples=k, block_length=100
  )
  chosen, _ = predict(base_model, base_params, batch, decoder, seed=3)
  samples, _ = predict(base_model, base_params, batch, sampling.Sampling(num_decodes=k), seed=3)
  # Sampling returns best first by log-prob; recover every sample's value by a full forward.
  prompts = common.PROMPTS
  for row, prompt in enumerate(prompts):
    candidates = samples[row]
    n = len(prompt)
    targets = np.zeros((k, common.LM_LENGTH), np.int32)
    for j in range(k):
      targets[j, :n] = prompt
      targets[j, n:] = candidates[j, : common.LM_LENGTH - n]
    one = {key: np.repeat(v[row : row + 1], k, axis=0) for key, v in batch.items()}
    values = full_values(model, params, one, targets)
    last = n + np.minimum(common.generated_length(candidates[:, : common.LM_LENGTH - n]), 100) - 1
    final = [values[j, last[j], targets[j, last[j]]] for j in range(k)]
    assert any((chosen[row, 0] == c).all() for c in candidates)
    np.testing.assert_array_equal(chosen[row, 0], candidates[int(np.argmax(final))])


def test_lambda_zero_and_one_sample_blocks_are_plain_sampling():
  base_model, batch, base_params = common.lm16()
  model = scorer_model(common.V16)
  params = common.random_params(model, 6)
  plain, plain_scores = predict(base_model, base_params, batch, sampling.Sampling(), seed=5)
  lambda_zero = controlled.TokenwiseCD(scorers=[controlled.PrefixScorer(model, params, 0.0)])
  tokens, scores = predict(base_model, base_params, batch, lambda_zero, seed=5)
  np.testing.assert_array_equal(tokens, plain)
  np.testing.assert_allclose(scores, plain_scores, atol=1e-5)
  one_sample = controlled.BlockwiseCD(
      scorers=[controlled.PrefixScorer(model, params, 3.0)], num_samples=1, block_length=2
  )
  tokens, scores = predict(base_model, base_params, batch, one_sample, seed=5)
  np.testing.assert_array_equal(tokens, plain)
  np.testing.assert_allclose(scores, plain_scores, atol=1e-5)


def count_of_three(sequences, room):
  del room
  return jnp.sum(sequences == 3, axis=-1).astype(jnp.float32)


def test_best_of_k_keeps_the_highest_reward_sample():
  base_model, batch, base_params = common.lm16()
  k = 6
  chosen, chosen_scores = predict(
      base_model, base_params, batch, controlled.BestOfK(count_of_three, num_samples=k), seed=2
  )
  samples, sample_scores = predict(
      base_model, base_params, batch, sampling.Sampling(num_decodes=k), seed=2
  )
  for row in range(len(common.PROMPTS)):
    rewards = (samples[row] == 3).sum(axis=-1)
    best = np.flatnonzero(rewards == rewards.max())
    matches = [j for j in best if (samples[row, j] == chosen[row, 0]).all()]
    assert matches, (row, rewards)
    assert chosen_scores[row, 0] == pytest.approx(sample_scores[row, matches[0]], abs=1e-5)


def uncached_scorer_inputs(model, params, batch) -> base.DecodeInputs:
  """The scorer's steps without a KV cache: each step runs a full forward over every input
  so far and reads the values at the step's position."""
  inputs = jnp.asarray(batch["decoder_input_tokens"])
  rows, length = inputs.shape
  num_prompt = jnp.maximum(jnp.sum(batch["decoder_causal_attention"], axis=-1) - 1, 0)

  def tokens_to_logits(token, cache):
    position = jnp.minimum(cache["position"], length - 1)
    tokens = cache["tokens"].at[jnp.arange(rows), position].set(token[:, 0])
    full = {"decoder_input_tokens": tokens, "decoder_target_tokens": jnp.ones_like(tokens)}
    values = model._apply({"params": params}, full)
    step_values = jnp.take_along_axis(values, position[:, None, None], axis=1)[:, 0]
    return step_values, {"tokens": tokens, "position": cache["position"] + 1}

  def reorder(cache, index):
    return jax.tree.map(lambda x: jnp.take(x, index, axis=0), cache)

  return base.DecodeInputs(
      tokens_to_logits=tokens_to_logits,
      cache={"tokens": inputs, "position": num_prompt},
      first_token=jnp.take_along_axis(inputs, num_prompt[:, None], axis=1)[:, 0],
      max_new_tokens=length - num_prompt,
      length=length,
      reorder_cache=reorder,
  )


def test_cached_value_model_decodes_as_the_uncached_one():
  base_model, batch, base_params = common.lm16()
  model = scorer_model(common.V16)
  params = common.random_params(model, 7)
  decoder = controlled.TokenwiseCD(scorers=[controlled.PrefixScorer(model, params, 2.0)])
  cached, cached_scores = predict(base_model, base_params, batch, decoder, seed=9)

  @jax.jit
  def uncached(base_params, params, rng):
    base_inputs = base_model.decode_inputs(base_params, batch)
    guided = controlled.guided_inputs(
        base_inputs, [(uncached_scorer_inputs(model, params, batch), 2.0)], steer=True
    )
    return sampling.Sampling()(guided, rng=rng, eos_id=EOS)

  tokens, scores = uncached(base_params, params, jax.random.PRNGKey(9))
  np.testing.assert_array_equal(cached, np.asarray(tokens))
  np.testing.assert_allclose(cached_scores, np.asarray(scores), atol=1e-4)
  assert (cached[:, 0] != 0).sum() > 20  # they generated something


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda m, p: controlled.PrefixScorer(m, p, -0.5), "must be >= 0"),
        (lambda m, p: controlled.TokenwiseCD(scorers=[]), "at least one prefix scorer"),
        (
            lambda m, p: controlled.BlockwiseCD(
                scorers=[controlled.PrefixScorer(m, p)], num_samples=0
            ),
            "num_samples=0 must be >= 1",
        ),
        (
            lambda m, p: controlled.BlockwiseCD(
                scorers=[controlled.PrefixScorer(m, p)], block_length=0
            ),
            "block_length=0 must be >= 1",
        ),
        (lambda m, p: controlled.BestOfK(count_of_three, num_samples=0), "num_samples=0"),
        (lambda m, p: controlled.BestOfK(None), "BestOfK.reward is None"),
    ],
)
def test_bad_settings_are_named(make, message):
  _, _, model, params = setup()
  with pytest.raises(ConfigError, match=message):
    make(model, params)


def test_a_scorer_with_another_vocabulary_is_refused():
  base_model, base_params, _, _ = setup()
  model = scorer_model(common.V16)
  decoder = controlled.TokenwiseCD(
      scorers=[controlled.PrefixScorer(model, common.random_params(model, 1))]
  )
  with pytest.raises(ConfigError, match="share the base model's vocabulary"):
    predict(base_model, base_params, common.decoder_only_batch([[2]], 3), decoder)


def test_a_decoder_called_without_its_scorers_says_how_to_call_it():
  base_model, batch, base_params = common.lm16()
  model = scorer_model(common.V16)
  decoder = controlled.TokenwiseCD(scorers=[controlled.PrefixScorer(model, None)])
  inputs = base_model.decode_inputs(base_params, batch)
  with pytest.raises(ValueError, match="Model.predict_batch"):
    decoder(inputs, rng=jax.random.PRNGKey(0), eos_id=EOS)
