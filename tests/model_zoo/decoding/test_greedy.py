"""Greedy decoding equals a NumPy loop that runs a full forward per step and takes the argmax."""

import numpy as np
import pytest

from tests.model_zoo.decoding import common
from model_zoo.decoding import sampling


def _assert_some_rows_end_early(expected):
  """The reference is worth comparing with: some rows stop at EOS, others run to the end."""
  ends = np.any(expected == common.EOS, axis=1)
  assert ends.any() and not ends.all(), expected


@pytest.mark.parametrize("num_layers", [1, 2])
def test_decoder_only_greedy_with_per_example_prompts_equals_numpy_loop(num_layers):
  """Right-padded prompts of different lengths (prefix-LM inputs), stripped from the output.

  With one layer a prefix-LM's bidirectional prompt attention cannot change the
  continuation; with two it does, so the reference is the model's own (prefix-LM) forward.
  """
  model, batch, params = common.lm16(num_layers)
  num_forced = [len(p) for p in common.PROMPTS]
  expected, expected_scores = common.greedy_reference(
      model, params, batch, num_forced, common.LM_LENGTH
  )
  _assert_some_rows_end_early(expected)
  sequences, scores = common.predict(model, params, batch, sampling.greedy())
  assert sequences.shape == (len(common.PROMPTS), 1, common.LM_LENGTH)
  np.testing.assert_array_equal(sequences[:, 0], expected)
  np.testing.assert_allclose(scores[:, 0], expected_scores, rtol=1e-5, atol=1e-5)


def test_encoder_decoder_greedy_equals_numpy_loop():
  model, batch, params = common.ed16()
  rows = len(batch["encoder_input_tokens"])
  expected, expected_scores = common.greedy_reference(
      model, params, batch, np.zeros(rows, int), common.ED_LENGTH
  )
  _assert_some_rows_end_early(expected)
  assert len({tuple(r) for r in expected}) > 4  # the encoder inputs matter
  sequences, scores = common.predict(model, params, batch, sampling.greedy())
  np.testing.assert_array_equal(sequences[:, 0], expected)
  np.testing.assert_allclose(scores[:, 0], expected_scores, rtol=1e-5, atol=1e-5)
