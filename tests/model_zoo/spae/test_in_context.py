"""A frozen LM with SPAE tokens in context, against brute force over the LM's full forward
pass: rank classification's scores, and generation restricted to the codebook."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo import dense, models
from model_zoo.decoding import sampling
from model_zoo.errors import ConfigError
from model_zoo.spae import in_context
from tests.model_zoo import tiny_lm

CODES = (5, 17)  # the SPAE codebook's LM ids in this test


@pytest.fixture(scope="module")
def lm():
  return models.DecoderOnlyModel(dense.DecoderOnlyLM(tiny_lm.TINY)), tiny_lm.params_for(
      tiny_lm.TINY
  )


def full_log_probs(model, params, sequence):
  """log p(token t | tokens < t) for every t of one sequence, BOS (0) first: one causal pass.
  (The targets only mark which positions are not padding: all of them.)"""
  inputs = jnp.asarray([[0, *sequence]])
  logits = model.module.apply({"params": params}, inputs, jnp.ones_like(inputs))
  return np.asarray(jax.nn.log_softmax(logits[0].astype(jnp.float32)))


def test_few_shot_prompt_lays_out_shots_then_the_query():
  prompt = in_context.few_shot_prompt([([5, 6], [20]), ([7, 8], [21, 22])], [9, 10], [3], [4])
  assert prompt == [5, 6, 3, 20, 4, 7, 8, 3, 21, 22, 4, 9, 10, 3]


def test_rank_classify_scores_are_the_candidates_log_likelihoods(lm):
  model, params = lm
  prompts = [[5, 6, 3, 20, 4, 9, 3], [7, 3]]
  candidates = [[20], [21, 22], [23]]
  got = in_context.rank_classify(model, params, prompts, candidates, rows_per_batch=4)
  for i, prompt in enumerate(prompts):
    for j, candidate in enumerate(candidates):
      log_probs = full_log_probs(model, params, prompt + candidate)
      # Candidate token k sits at position len(prompt) + k, predicted from the one before.
      want = sum(log_probs[len(prompt) + k, tok] for k, tok in enumerate(candidate))
      np.testing.assert_allclose(got[i, j], want, rtol=1e-4, atol=1e-4)


def test_greedy_generation_is_the_argmax_over_codebook_ids(lm):
  model, params = lm
  prompts = [[5, 6, 3], [9, 3, 20, 4, 7]]
  got = in_context.generate_image_tokens(model, params, prompts, 5, CODES, sampling.greedy())
  assert got.shape == (2, 5)
  outside = 0  # steps where the LM's own argmax is not a code: the mask decided them
  for row, prompt in zip(got, prompts):
    sequence = list(prompt)
    for _ in range(5):  # one full forward pass per token: no cache, no decoder
      log_probs = full_log_probs(model, params, sequence)[-1]
      outside += not CODES[0] <= np.argmax(log_probs) < CODES[1]
      sequence.append(CODES[0] + int(np.argmax(log_probs[CODES[0] : CODES[1]])))
    assert row.tolist() == sequence[len(prompt) :]
  assert outside > 0


def test_sampled_generation_stays_in_the_codebook(lm):
  model, params = lm
  decoder = sampling.Sampling(temperature=1.0)
  got = in_context.generate_image_tokens(
      model, params, [[5, 3]] * 8, 6, CODES, decoder, jax.random.PRNGKey(3)
  )
  assert got.min() >= CODES[0] and got.max() < CODES[1]
  assert len(np.unique(got)) > 3  # sampled, not one repeated id


def test_a_decoder_with_its_own_callback_is_refused(lm):
  model, params = lm
  decoder = sampling.Sampling(temperature=0.0, logit_callback=lambda lp, s: lp)
  with pytest.raises(ConfigError, match="logit_callback"):
    in_context.generate_image_tokens(model, params, [[5]], 2, CODES, decoder)
