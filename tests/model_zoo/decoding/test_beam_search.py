"""Beam search against brute force: with a beam wide enough to keep every hypothesis, it
returns exactly the best outputs of an enumeration of all of them.

Vocabulary of 5 (pad 0, EOS 1), at most MAX_LEN generated tokens: an output ends at its
first EOS or runs to MAX_LEN tokens. Its log-probability is the sum of its tokens' log-probs
from one full forward pass over it (no decoder, no cache); its beam score is
log p / ((5 + n) / 6) ** alpha with n the generated tokens including EOS.
"""

import functools

import numpy as np
import pytest

from tests.model_zoo.decoding import common
from model_zoo.decoding import beam_search, sampling
from model_zoo.errors import ConfigError

MAX_LEN = 4
# At step t there are 4**t live prefixes (no EOS yet) and 5 * 4**t candidates; beam search
# keeps the 2 * beam_size best candidates, so it sees them all when 2k >= 5 * 4**(MAX_LEN-1).
EXACT_BEAM = 5 * 4 ** (MAX_LEN - 1) // 2  # 160
TOP = 10  # hypotheses whose order is checked one by one


def _decoder_only_setup():
  model = common.decoder_only(common.V5)
  return model, common.decoder_only_batch([[]], MAX_LEN), common.random_params(model, 11)


def _encoder_decoder_setup():
  model = common.encoder_decoder(common.V5)
  batch = common.encoder_decoder_batch([[2, 3, 4, 0, 0], [4, 4, 2, 3, 2]], MAX_LEN)
  return model, batch, common.random_params(model, 12)


SETUPS = {"decoder_only": _decoder_only_setup, "encoder_decoder": _encoder_decoder_setup}


@functools.lru_cache(maxsize=None)
def _setup(name):
  return SETUPS[name]()


def _brute_force(model, params, batch, prompts, length, alpha):
  """Every continuation of every row, ranked: lists of ([count, length] outputs, scores)."""
  ranked = []
  for row, prompt in enumerate(prompts):
    n = len(prompt)
    outputs = common.all_continuations(5, length - n)
    count = len(outputs)
    targets = np.zeros((count, length), np.int32)
    targets[:, :n] = prompt
    targets[:, n:] = outputs
    rows = {k: np.repeat(np.asarray(v)[row : row + 1], count, axis=0) for k, v in batch.items()}
    generated = common.generated_length(outputs)
    log_p = common.sequence_log_probs(
        model, params, rows, targets, np.full(count, n), n + generated
    )
    scores = log_p / common.length_penalty(generated, alpha)
    order = np.argsort(-scores, kind="stable")
    padded = np.zeros((count, length), np.int32)
    padded[:, : length - n] = outputs
    ranked.append((padded[order], scores[order]))
  return ranked


def _beam(model, params, batch, beam_size, alpha):
  return common.predict(
      model, params, batch, beam_search.BeamSearch(beam_size=beam_size, alpha=alpha)
  )


def _check_against_brute_force(sequences, scores, ranked, beam_size):
  for row, (expected, expected_scores) in enumerate(ranked):
    gaps = -np.diff(expected_scores[: TOP + 1])
    assert gaps.min() > 1e-4, "reference ranking has near ties; pick other params"
    np.testing.assert_array_equal(sequences[row, :TOP], expected[:TOP], err_msg=f"row {row}")
    # Every returned hypothesis: the k best scores of the enumeration, best first; slots
    # beyond the number of possible outputs hold no hypothesis (a hugely negative score).
    found = min(beam_size, len(expected_scores))
    np.testing.assert_allclose(
        scores[row, :found], expected_scores[:found], rtol=1e-5, atol=1e-4, err_msg=f"row {row}"
    )
    assert np.all(scores[row, found:] < -1e29)


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("name", sorted(SETUPS))
def test_wide_beam_finds_the_exact_best_outputs(name, alpha):
  model, batch, params = _setup(name)
  rows = len(next(iter(batch.values())))
  ranked = _brute_force(model, params, batch, [[]] * rows, MAX_LEN, alpha)
  # The model is far from uniform and not trivially greedy-optimal everywhere.
  assert ranked[0][1][0] - ranked[0][1][-1] > 5.0
  sequences, scores = _beam(model, params, batch, EXACT_BEAM, alpha)
  assert sequences.shape == (rows, EXACT_BEAM, MAX_LEN) and scores.shape == (rows, EXACT_BEAM)
  _check_against_brute_force(sequences, scores, ranked, EXACT_BEAM)


def test_length_penalty_changes_the_ranking():
  """alpha matters for this model: the alpha=0 and alpha=0.6 brute-force winners differ."""
  model, batch, params = _setup("encoder_decoder")
  plain = _brute_force(model, params, batch, [[]] * 2, MAX_LEN, 0.0)
  penalised = _brute_force(model, params, batch, [[]] * 2, MAX_LEN, 0.6)
  assert any(not np.array_equal(p[0][:TOP], q[0][:TOP]) for p, q in zip(plain, penalised))


@pytest.mark.parametrize("num_layers", [1, 2])
def test_wide_beam_respects_per_example_prompts(num_layers):
  """Prompts of different lengths (the prefix-LM inputs) are kept and not scored.

  With one layer a prefix-LM's bidirectional prompt attention gives the same continuation
  log-probs as causal attention; with two layers it does not, so the two-layer case also
  checks that decoding attends to the prompt as the model's full forward does.
  """
  model = common.decoder_only(common.V5, num_layers=num_layers)
  prompts = [[3], [2, 4]]
  length = MAX_LEN + 1
  batch = common.decoder_only_batch(prompts, length)
  params = common.random_params(model, 13)
  ranked = _brute_force(model, params, batch, prompts, length, 0.6)
  sequences, scores = _beam(model, params, batch, EXACT_BEAM, 0.6)
  # The prompt is stripped: row 1's continuations (3 tokens at most) end with zeros.
  assert not sequences[1, :, length - 2 :].any()
  _check_against_brute_force(sequences, scores, ranked, EXACT_BEAM)


def _greedy_path_with_eos_alternatives(model, params, batch, length):
  """What beam_size=1, alpha=0 returns, in NumPy.

  The single live beam follows the greedy path; at each step the two best candidates are
  expanded, so where EOS is the second-best token, "greedy prefix + EOS" is finished too.
  The result is the best of the greedy output and those alternatives.
  """
  rows = len(batch["encoder_input_tokens"])
  greedy, greedy_scores = common.greedy_reference(model, params, batch, np.zeros(rows, int), length)
  lp = common.full_forward_log_probs(model, params, batch, greedy)
  best, best_scores = greedy.copy(), greedy_scores.copy()
  for row in range(rows):
    prefix_score = 0.0
    for t in range(common.generated_length(greedy[row : row + 1])[0]):
      alternative = prefix_score + lp[row, t, common.EOS]
      if np.argsort(-lp[row, t])[1] == common.EOS and alternative > best_scores[row]:
        best[row] = np.concatenate([greedy[row, :t], [common.EOS], np.zeros(length - t - 1, int)])
        best_scores[row] = alternative
      prefix_score += lp[row, t, greedy[row, t]]
  return greedy, greedy_scores, best, best_scores


def test_beam_size_one_is_greedy_up_to_finished_eos_alternatives():
  """beam_size=1 is not plain greedy (T5X's neither): with 2k = 2 candidates per step, an EOS
  ranked second ends a hypothesis that may beat the greedy output. Otherwise it is greedy."""
  model, batch, params = common.ed16()
  greedy, greedy_scores, expected, expected_scores = _greedy_path_with_eos_alternatives(
      model, params, batch, common.ED_LENGTH
  )
  sequences, scores = _beam(model, params, batch, 1, 0.0)
  np.testing.assert_array_equal(sequences[:, 0], expected)
  np.testing.assert_allclose(scores[:, 0], expected_scores, rtol=1e-5, atol=1e-5)
  # Most rows are plain greedy; the decoder's own greedy agrees there.
  is_greedy = np.all(expected == greedy, axis=1)
  assert is_greedy.sum() >= 4 and not is_greedy.all()  # both cases occur
  decoded, decoded_scores = common.predict(model, params, batch, sampling.greedy())
  np.testing.assert_array_equal(decoded[is_greedy, 0], sequences[is_greedy, 0])
  np.testing.assert_allclose(
      decoded_scores[is_greedy, 0], scores[is_greedy, 0], rtol=1e-5, atol=1e-5
  )


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_slots_beyond_the_possible_outputs_stay_empty(alpha):
  """With more beams than outputs exist, the extra finished slots hold nothing.

  Two tokens at most: 1 + 4 + 16 = 21 outputs, beam 32. The slots past the 21 real ones
  must keep the empty score (NEG_INF, as _BeamState documents) and must not hold sequences
  that break predict_batch's "0 after EOS" or repeat a real output under a made-up score.
  """
  model, _, params = _setup("decoder_only")
  batch = common.decoder_only_batch([[]], 2)
  sequences, scores = _beam(model, params, batch, 32, alpha)
  ranked = _brute_force(model, params, batch, [[]], 2, alpha)[0]
  assert len(ranked[1]) == 21
  np.testing.assert_array_equal(sequences[0, :21], ranked[0])
  np.testing.assert_allclose(scores[0, :21], ranked[1], rtol=1e-5, atol=1e-4)
  assert np.all(scores[0, 21:] <= beam_search.NEG_INF), scores[0, 21:]
  after_eos = np.cumsum(sequences[0] == common.EOS, axis=1) - (sequences[0] == common.EOS) > 0
  assert not sequences[0][after_eos].any(), sequences[0, 21:]


def test_beam_size_below_one_is_rejected_by_name():
  with pytest.raises(ConfigError, match="BeamSearch.beam_size"):
    beam_search.BeamSearch(beam_size=0)
