"""Model.score_batch is the weighted sum of per-token log-probs of a plain forward pass."""

import jax
import numpy as np
import pytest

from tests.model_zoo.decoding import common
from model_zoo.decoding import sampling

LENGTH = 7


def _ragged_targets(rows: int, seed: int):
  targets = np.random.RandomState(seed).randint(1, 16, size=(rows, LENGTH)).astype(np.int32)
  lengths = np.array([LENGTH, 3, 5, 1, 6, 2, 7, 4][:rows])
  targets[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0
  return targets


def _numpy_scores(logits, batch):
  """Float64 log-softmax of the module's own forward, gathered at the targets, weighted."""
  log_probs = common.log_softmax(logits)
  targets = np.asarray(batch["decoder_target_tokens"])
  weights = np.asarray(batch.get("decoder_loss_weights", targets > 0), np.float64)
  per_token = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0] * weights
  return per_token.sum(axis=1), per_token


def _check(model, params, batch):
  @jax.jit
  def run(p, b):  # one compilation: the plain forward and both forms of score_batch
    logits = model.module.apply({"params": p}, **model._module_inputs(b))
    return logits, model.score_batch(p, b), model.score_batch(p, b, return_per_token=True)

  logits, scores, (same_scores, per_token) = jax.tree.map(np.asarray, run(params, batch))
  np.testing.assert_array_equal(scores, same_scores)
  expected, expected_per_token = _numpy_scores(logits, batch)
  assert scores.shape == expected.shape and per_token.shape == expected_per_token.shape
  np.testing.assert_allclose(per_token, expected_per_token, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
  # Weighted-out positions contribute nothing; the rest are real (negative) log-probs.
  weight = np.asarray(batch.get("decoder_loss_weights", batch["decoder_target_tokens"] > 0))
  assert np.all(per_token[weight == 0] == 0) and np.all(per_token[weight > 0] < 0)


@pytest.mark.parametrize(
    "prefix_lm", [False, True], ids=["default_weights", "prefix_lm_loss_weights"]
)
def test_decoder_only_scores(prefix_lm):
  model, _, params = common.lm16()
  targets = _ragged_targets(8, seed=41)
  batch = {"decoder_input_tokens": common.shift_right(targets), "decoder_target_tokens": targets}
  if prefix_lm:  # inputs attend bidirectionally and carry no loss (weights differ from targets > 0)
    prefix = np.array([2, 1, 0, 1, 3, 0, 2, 1])
    batch["decoder_causal_attention"] = (np.arange(LENGTH)[None, :] <= prefix[:, None]).astype(
        np.int32
    )
    batch["decoder_loss_weights"] = (
        (targets > 0) & (np.arange(LENGTH)[None, :] >= prefix[:, None])
    ).astype(np.int32)
  _check(model, params, batch)


def test_encoder_decoder_scores():
  model, ed_batch, params = common.ed16()
  targets = _ragged_targets(8, seed=43)
  batch = {
      "encoder_input_tokens": ed_batch["encoder_input_tokens"],
      "decoder_input_tokens": common.shift_right(targets),
      "decoder_target_tokens": targets,
  }
  _check(model, params, batch)


def test_predicted_scores_are_the_score_batch_of_the_predictions():
  """What predict_batch reports for its outputs is what score_batch says about them."""
  model, batch, params = common.ed16()
  sequences, scores = common.predict(model, params, batch, sampling.greedy())
  sequences = sequences[:, 0]
  length = sequences.shape[1]
  # No pad id inside an output (score_batch would mask it as padding); some end at EOS.
  inside = np.arange(length)[None, :] < common.generated_length(sequences)[:, None]
  assert np.all(sequences[inside] > 0) and np.any(sequences == common.EOS)
  scored = {
      "encoder_input_tokens": batch["encoder_input_tokens"],
      "decoder_target_tokens": sequences,
      "decoder_input_tokens": common.shift_right(sequences),
  }
  np.testing.assert_allclose(
      np.asarray(jax.jit(model.score_batch)(params, scored)), scores[:, 0], rtol=1e-5, atol=1e-5
  )
