"""Cross entropy with label smoothing and z-loss against a float64 NumPy formula."""

import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo import losses


def numpy_loss(logits, targets, z_loss, label_smoothing):
  logits = logits.astype(np.float64)
  vocab = logits.shape[-1]
  log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
  log_p = logits - log_z[..., None]
  on, off = 1.0 - label_smoothing, label_smoothing / (vocab - 1)
  q = np.full(logits.shape, off)
  np.put_along_axis(q, targets[..., None], on, axis=-1)
  entropy = -(on * np.log(on) + (vocab - 1) * off * np.log(off)) if label_smoothing else 0.0
  return -(q * log_p).sum(-1) - entropy + z_loss * log_z**2, z_loss * log_z**2


@pytest.mark.parametrize(
    "z_loss, label_smoothing", [(0.0, 0.0), (1e-4, 0.0), (0.0, 0.1), (1e-3, 0.2)]
)
def test_cross_entropy_matches_numpy(z_loss, label_smoothing):
  rs = np.random.RandomState(0)
  logits = rs.normal(size=(3, 5, 11)) * 3
  targets = rs.randint(0, 11, size=(3, 5))
  got, got_z = losses.cross_entropy_with_logits(
      jnp.asarray(logits, jnp.float32),
      jnp.asarray(targets),
      z_loss=z_loss,
      label_smoothing=label_smoothing,
  )
  want, want_z = numpy_loss(logits, targets, z_loss, label_smoothing)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got_z, want_z, rtol=1e-5, atol=1e-7)


def test_perfect_smoothed_prediction_scores_zero():
  """With smoothing, the loss of the smoothed target distribution itself is 0 (entropy removed)."""
  vocab, smoothing = 7, 0.1
  q = np.full((1, vocab), smoothing / (vocab - 1))
  q[0, 2] = 1 - smoothing
  loss, _ = losses.cross_entropy_with_logits(
      jnp.log(jnp.asarray(q, jnp.float32)), jnp.array([2]), label_smoothing=smoothing
  )
  assert abs(float(loss[0])) < 1e-5


def test_target_log_probs():
  logits = np.array([[[1.0, 2.0, 3.0]]])
  got = losses.target_log_probs(jnp.asarray(logits), jnp.array([[1]]))
  assert float(got[0, 0]) == pytest.approx(2.0 - np.log(np.exp(logits).sum()), rel=1e-6)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_token_losses_log_prob_and_correct(label_smoothing):
  """log p(target) is unsmoothed; `correct` where no logit exceeds the target's (ties too)."""
  rs = np.random.RandomState(1)
  logits = rs.normal(size=(2, 6, 9)).astype(np.float32)
  logits[0, 0, [2, 5]] = 10.0  # a tie for the top: both count as correct
  targets = rs.randint(0, 9, size=(2, 6))
  targets[0, 0] = 5
  targets[1, :3] = np.argmax(logits[1, :3], axis=-1)
  terms = losses.token_losses(
      jnp.asarray(logits), jnp.asarray(targets), z_loss=1e-3, label_smoothing=label_smoothing
  )
  log_p = logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
  want = np.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
  np.testing.assert_allclose(terms.log_prob, want, rtol=1e-5, atol=1e-5)
  want_correct = np.max(logits, -1) == np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  np.testing.assert_array_equal(terms.correct, want_correct)
  assert float(terms.correct[0, 0]) == 1.0 and np.all(np.asarray(terms.correct[1, :3]) == 1.0)
  assert 0 < float(np.mean(terms.correct)) < 1
