"""Shallow fusion with the exact score of Hu et al. 2023, in beam search (and greedy).

A hypothesis y scores the sum over its tokens, EOS included, of log p_ASR + lambda log p_LM +
beta, divided by T5X's ((5 + |y|) / 6) ** alpha: `shallow_fusion(..., renormalize=False)`
gives those step scores and decoders add them as they are. Most cases use table models
(`common.table_inputs`: a fixed distribution per position and previous token), whose every
output can be scored in NumPy from the tables alone and enumerated; two use the neural toy
models, scored by full forward passes.
"""

import functools

import jax
import numpy as np
import pytest

from tests.model_zoo.decoding import common
from model_zoo.decoding import beam_search, fusion, sampling
from model_zoo.errors import ConfigError

TOL = dict(rtol=1e-5, atol=1e-4)


@functools.lru_cache(maxsize=None)
def _fused_decode_fn(decoder, weight: float, bonus: float):
  """jit((primary [B, L, V, V], lm) -> [B, E, L], [B, E]): `decoder` over the two tables, fused
  unrenormalised with `weight` and `bonus`."""

  @jax.jit
  def run(primary, lm):
    inputs = fusion.shallow_fusion(
        common.table_inputs(primary, decoder.rows_per_example),
        [(common.table_inputs(lm, decoder.rows_per_example), weight)],
        length_bonus=bonus,
        renormalize=False,
    )
    return decoder(inputs, rng=jax.random.PRNGKey(0), eos_id=common.EOS)

  return run


def _beam(primary, lm, *, weight, bonus, alpha, beam_size):
  decoder = beam_search.BeamSearch(beam_size=beam_size, alpha=alpha)
  return jax.tree.map(np.asarray, _fused_decode_fn(decoder, weight, bonus)(primary, lm))


def _fused_scores(primary, lm, weight, bonus, alpha, outputs, examples):
  """The paper's score of each output [M, L] of examples [M], over T5X's length penalty: the sum
  over its tokens, EOS included, of log p_ASR + weight log p_LM + bonus, read from the tables'
  float64 log-softmaxes."""
  outputs = np.asarray(outputs)
  previous = common.shift_right(outputs)
  t = np.arange(outputs.shape[1])[None, :]
  rows = np.asarray(examples)[:, None]

  def token_log_probs(logits):
    return common.log_softmax(logits)[rows, t, previous, outputs]

  length = common.generated_length(outputs)
  step = token_log_probs(primary) + weight * token_log_probs(lm) + bonus
  total = np.where(t < length[:, None], step, 0.0).sum(axis=1)
  return total / common.length_penalty(length, alpha)


def _ranked(primary, lm, weight, bonus, alpha):
  """Brute force: every possible output of each example, best first, with its score."""
  outputs = common.all_continuations(primary.shape[-1], primary.shape[1])
  ranked = []
  for example in range(len(primary)):
    examples = np.full(len(outputs), example)
    scores = _fused_scores(primary, lm, weight, bonus, alpha, outputs, examples)
    possible = np.isfinite(scores)  # a -inf logit in the primary table rules a token out
    order = np.argsort(-scores[possible], kind="stable")
    ranked.append((outputs[possible][order], scores[possible][order]))
  return ranked


def _check_best(sequences, scores, ranked, top):
  """The decoder's `top` best of each example are the enumeration's, in order, and so are all
  its scores."""
  for example, (expected, expected_scores) in enumerate(ranked):
    assert -np.diff(expected_scores[: top + 1]).min() > 1e-4, "near ties; pick other tables"
    np.testing.assert_array_equal(sequences[example, :top], expected[:top], f"example {example}")
    found = min(scores.shape[1], len(expected_scores))
    np.testing.assert_allclose(scores[example, :found], expected_scores[:found], **TOL)


def _random_tables(seed, examples, length, vocab=5, scale=2.0):
  rs = np.random.RandomState(seed)
  return tuple(scale * rs.standard_normal((examples, length, vocab, vocab)) for _ in range(2))


def _probability_table(length, rows, vocab=4):
  """Logits [1, L, vocab, vocab]: log of `rows[(t, previous)]` (next-token probabilities),
  uniform elsewhere."""
  table = np.full((1, length, vocab, vocab), 1.0 / vocab)
  for (t, previous), probabilities in rows.items():
    table[0, t, previous] = probabilities
  return np.log(table)


# --- constructed cases (V = 4: pad 0, EOS 1, tokens 2 and 3) -----------------------------------
def test_lm_weight_flips_the_best_hypothesis_to_the_lms_and_zero_does_not():
  """The ASR model prefers "2 EOS" (.55 against .40), the LM "3 EOS" (.8 against .1); both
  end nearly surely after one token. The LM's wins once lambda > ln(.55 / .4) / ln 8 ~ 0.15."""
  end = [0.01, 0.97, 0.01, 0.01]
  asr = _probability_table(2, {(0, 0): [0.01, 0.04, 0.55, 0.40], (1, 2): end, (1, 3): end})
  lm = _probability_table(2, {(0, 0): [0.05, 0.05, 0.10, 0.80], (1, 2): end, (1, 3): end})
  for weight, best in [(0.0, [2, 1]), (0.1, [2, 1]), (0.2, [3, 1]), (1.0, [3, 1])]:
    sequences, scores = _beam(asr, lm, weight=weight, bonus=0.0, alpha=0.0, beam_size=2)
    np.testing.assert_array_equal(sequences[0, 0], best, f"lambda={weight}")
    np.testing.assert_allclose(
        scores[0], _fused_scores(asr, lm, weight, 0.0, 0.0, sequences[0], [0, 0]), **TOL
    )


def test_length_bonus_flips_a_short_hypothesis_to_a_longer_one():
  """ "EOS" (log .5) against "2 EOS" (log .4 + log .9): the longer one wins once beta exceeds
  their difference, ln(.5 / .36) ~ 0.33 (one token more, so one bonus more)."""
  asr = _probability_table(4, {(0, 0): [0.05, 0.5, 0.4, 0.05], (1, 2): [0.03, 0.9, 0.04, 0.03]})
  for bonus, best in [(0.0, [1, 0, 0, 0]), (0.3, [1, 0, 0, 0]), (0.4, [2, 1, 0, 0])]:
    sequences, _ = _beam(asr, np.zeros_like(asr), weight=0.0, bonus=bonus, alpha=0.0, beam_size=2)
    np.testing.assert_array_equal(sequences[0, 0], best, f"beta={bonus}")


@pytest.mark.parametrize(
    "length, bonus, alpha, p_eos, p_two",
    [(4, 1.0, 0.0, 0.9, 0.07), (4, 1.0, 0.6, 0.9, 0.07), (6, 0.0, 0.6, 0.37, 0.3)],
)
def test_early_stop_waits_for_a_beam_that_can_still_just_win(length, bonus, alpha, p_eos, p_two):
  """One beam: "EOS" finishes first, and the live "2" goes on with near-certain 2s to the room,
  where it ends as the best output, but only just. With beta = 1 it has to gain almost the
  whole bonus on each of the 3 tokens it may still add (an early stop that counted one token
  fewer, or took the bound for 0, returns "EOS"); with beta = 0 and alpha > 0 its negative
  total beats "EOS" only over the penalty of the full length (an early stop that divided it by
  a smaller penalty returns "EOS")."""
  rest = (1.0 - p_eos - p_two) / 2
  rows = {(0, 0): [rest, p_eos, p_two, rest]}
  rows.update({(t, 2): [0.001, 0.001, 0.997, 0.001] for t in range(1, length)})
  asr = _probability_table(length, rows)
  lm = np.zeros_like(asr)
  sequences, scores = _beam(asr, lm, weight=0.0, bonus=bonus, alpha=alpha, beam_size=1)
  ranked = _ranked(asr, lm, 0.0, bonus, alpha)
  np.testing.assert_array_equal(ranked[0][0][0], [2] * length)
  _check_best(sequences, scores, ranked, top=1)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 2.0])
@pytest.mark.parametrize("bound", [0.0, 0.5, 2.0])
def test_best_reachable_tries_every_length_a_beam_may_end_at(bound, alpha):
  """After n tokens with score s <= bound n, a live hypothesis may add j = 1 .. room - n tokens,
  each scoring at most the bound: it finishes with at most (s + bound j) / penalty(n + j), and
  exactly that if every token scores the bound. Its best is at the room for alpha <= 1, and
  may be shorter for alpha = 2 with a positive total."""
  rs = np.random.RandomState(7)
  length, cases = 8, 200
  generated = rs.randint(1, length, cases)
  room = rs.randint(generated + 1, length + 1)
  # Half the hypotheses got the whole bound on every token so far: the highest score possible.
  score = bound * generated - rs.exponential(2.0, cases) * rs.randint(0, 2, cases)
  got = beam_search.best_reachable(
      np.float32(score), np.int32(generated), np.int32(room), bound, alpha, length
  )
  expected = [
      max(
          (score[c] + bound * j) / common.length_penalty(generated[c] + j, alpha)
          for j in range(1, room[c] - generated[c] + 1)
      )
      for c in range(cases)
  ]
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# --- the formula, on random tables and on neural models ----------------------------------------
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_fused_scores_are_the_papers_formula(alpha):
  """Every returned hypothesis (a narrow beam, so not the exact best) scores exactly its tokens'
  log p_ASR + lambda log p_LM + beta, EOS included, over the length penalty."""
  primary, lm = _random_tables(1, examples=3, length=5)
  sequences, scores = _beam(primary, lm, weight=0.6, bonus=0.7, alpha=alpha, beam_size=3)
  assert np.all(scores > -1e29)
  examples = np.repeat(np.arange(3), 3)
  flat = sequences.reshape(9, -1)
  expected = _fused_scores(primary, lm, 0.6, 0.7, alpha, flat, examples).reshape(3, 3)
  np.testing.assert_allclose(scores, expected, **TOL)
  # Hypotheses of several lengths, ended by EOS and by the room: the bonus and the length
  # penalty are checked, EOS steps included.
  assert len(set(common.generated_length(flat))) >= 3


def test_greedy_adds_the_unrenormalised_scores():
  """Greedy (through base.next_log_probs, like every decoder) scores its output by the summed
  fused step scores, bonus included; the choice at each step is the fused argmax."""
  primary, lm = _random_tables(2, examples=4, length=5)
  sequences, scores = _fused_decode_fn(sampling.greedy(), 0.6, 0.7)(primary, lm)

  def step_scores(targets):
    """Every candidate token's fused score at every position of `targets`, [rows, L, V]."""
    rows, length = targets.shape
    previous = common.shift_right(targets)
    fused = common.log_softmax(primary) + 0.6 * common.log_softmax(lm) + 0.7
    return fused[np.arange(rows)[:, None], np.arange(length)[None, :], previous]

  expected, expected_scores = common.greedy_reference(
      None, None, {}, np.zeros(4, int), 5, step_log_probs=step_scores
  )
  np.testing.assert_array_equal(np.asarray(sequences)[:, 0], expected)
  np.testing.assert_allclose(np.asarray(scores)[:, 0], expected_scores, **TOL)


NEURAL_BEAM = 4


@functools.lru_cache(maxsize=None)
def _neural_setup():
  """common.ed16's encoder-decoder (the "ASR model") and common.lm16's LM, without prompts."""
  primary, batch, params = common.ed16()
  lm, _, lm_params = common.lm16()
  lm_batch = common.decoder_only_batch([[]] * len(batch["encoder_input_tokens"]), common.ED_LENGTH)
  return primary, lm, params, lm_params, batch, lm_batch


def _neural_fused_beam(weight, bonus, alpha):
  primary, lm, params, lm_params, batch, lm_batch = _neural_setup()
  decoder = beam_search.BeamSearch(beam_size=NEURAL_BEAM, alpha=alpha)

  def run(params, lm_params, batch, lm_batch):
    expand = lambda b: jax.tree.map(lambda x: np.repeat(x, NEURAL_BEAM, axis=0), b)
    inputs = fusion.shallow_fusion(
        primary.decode_inputs(params, expand(batch)),
        [(lm.decode_inputs(lm_params, expand(lm_batch)), weight)],
        length_bonus=bonus,
        renormalize=False,
    )
    return decoder(inputs, rng=jax.random.PRNGKey(0), eos_id=common.EOS)

  return jax.tree.map(np.asarray, jax.jit(run)(params, lm_params, batch, lm_batch))


def test_no_lm_and_no_bonus_unrenormalised_is_the_asr_models_own_beam_search():
  primary, _, params, _, batch, _ = _neural_setup()
  sequences, scores = _neural_fused_beam(0.0, 0.0, 0.6)
  expected, expected_scores = common.predict(
      primary, params, batch, beam_search.BeamSearch(beam_size=NEURAL_BEAM, alpha=0.6)
  )
  np.testing.assert_array_equal(sequences, expected)
  np.testing.assert_allclose(scores, expected_scores, rtol=1e-6, atol=1e-6)


def test_fused_neural_scores_are_the_papers_formula_over_full_forwards():
  """Through both models' KV caches (reordered with the beams): each returned hypothesis scores
  log p_ASR + 0.6 log p_LM + 0.5 per token by two full forwards over it."""
  primary, lm, params, lm_params, batch, lm_batch = _neural_setup()
  sequences, scores = _neural_fused_beam(0.6, 0.5, 0.6)
  flat = sequences.reshape(-1, common.ED_LENGTH)
  rows = len(flat)
  expand = lambda b: {k: np.repeat(np.asarray(v), NEURAL_BEAM, axis=0) for k, v in b.items()}
  n = common.generated_length(flat)
  start = np.zeros(rows, int)
  total = (
      common.sequence_log_probs(primary, params, expand(batch), flat, start, n)
      + 0.6 * common.sequence_log_probs(lm, lm_params, expand(lm_batch), flat, start, n)
      + 0.5 * n
  )
  expected = (total / common.length_penalty(n, 0.6)).reshape(scores.shape)
  np.testing.assert_allclose(scores, expected, **TOL)
  assert len(set(n)) > 1  # hypotheses of several lengths, so the bonus is tested


# --- brute force --------------------------------------------------------------------------------
@pytest.mark.parametrize("weight, bonus", [(0.0, 0.0), (0.5, 0.0), (0.5, 0.8), (0.0, 1.5)])
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_wide_beam_finds_the_best_fused_outputs(weight, bonus, alpha):
  """V = 5, 4 tokens at most (341 outputs): a beam of 160 keeps every live prefix (64 at
  most, 320 candidates), so its finished set is the exact top 160 of the enumeration."""
  primary, lm = _random_tables(3, examples=2, length=4)
  sequences, scores = _beam(primary, lm, weight=weight, bonus=bonus, alpha=alpha, beam_size=160)
  _check_best(sequences, scores, _ranked(primary, lm, weight, bonus, alpha), top=10)


def _chain_tables(seed, examples, length, vocab=5, scale=3.0):
  """Random tables in which, after the first token, the primary allows only EOS and one other
  token (-inf elsewhere): vocab - 1 chains that may end at every step. A beam of vocab - 1
  keeps them all (2 candidates each), while its finished set fills after 2 steps, so the
  early stop decides when an example ends."""
  primary, lm = _random_tables(seed, examples, length, vocab, scale)
  rs = np.random.RandomState(seed + 100)
  allowed = rs.choice([t for t in range(vocab) if t != common.EOS], size=primary.shape[:3])
  tokens = np.arange(vocab)
  keep = (tokens == common.EOS) | (tokens == allowed[..., None])
  keep[:, 0] = True
  return np.where(keep, primary, -np.inf), lm


@pytest.mark.parametrize("weight, bonus", [(0.0, 0.0), (0.5, 0.6), (0.0, 1.0), (0.5, 2.5)])
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_early_stop_keeps_every_output_that_can_still_win(weight, bonus, alpha):
  """The beam (4) keeps every live chain, so it is exact unless it stops an example too early:
  with a positive bonus a live beam gains up to beta a token, and an early stop that took the
  bound for 0 loses outputs of the top 4."""
  primary, lm = _chain_tables(4, examples=6, length=6)
  sequences, scores = _beam(primary, lm, weight=weight, bonus=bonus, alpha=alpha, beam_size=4)
  _check_best(sequences, scores, _ranked(primary, lm, weight, bonus, alpha), top=4)


# --- errors ---------------------------------------------------------------------------------------
def _table():
  return common.table_inputs(np.zeros((1, 4, 4, 4)), 1)


def test_a_negative_lm_weight_is_rejected_with_its_value():
  with pytest.raises(ConfigError, match=r"-0\.5; it must be >= 0"):
    fusion.shallow_fusion(_table(), [(_table(), -0.5)], renormalize=False)


def test_a_length_bonus_needs_unrenormalised_scores():
  with pytest.raises(ConfigError, match="length_bonus=0.5 needs renormalize=False"):
    fusion.shallow_fusion(_table(), [(_table(), 0.5)], length_bonus=0.5)


def test_fusing_already_fused_scores_is_rejected():
  fused = fusion.shallow_fusion(_table(), [(_table(), 0.5)], renormalize=False)
  with pytest.raises(ValueError, match="one shallow_fusion call"):
    fusion.shallow_fusion(fused, [(_table(), 0.5)])
