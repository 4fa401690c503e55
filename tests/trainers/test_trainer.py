"""The trainer's numerics: the same run on different meshes, and gradient accumulation."""

import jax
import numpy as np
import pytest

from tests.trainers import helpers
from trainers import trainer as trainer_lib

STEPS = 20
# float32 on CPU; reductions are ordered differently on each mesh, so the curves agree to
# rounding, amplified a little over 20 Adam steps.
RTOL = 2e-4


@pytest.fixture(scope="module")
def single_device_losses():
  _, losses = helpers.train_losses(helpers.make_trainer(num_devices=1), STEPS)
  return losses


@pytest.mark.slow
@pytest.mark.parametrize("mesh_shape", [(8, 1, 1, 1), (2, 2, 2, 1)])
def test_same_loss_curve_on_1_and_8_devices(single_device_losses, mesh_shape):
  tr = helpers.make_trainer(mesh_shape=mesh_shape)
  assert tr.partitioner.mesh.devices.size == 8
  _, losses = helpers.train_losses(tr, STEPS)
  np.testing.assert_allclose(losses, single_device_losses, rtol=RTOL)
  assert losses[-1] < losses[0] - 0.5  # it is really learning, not a flat line


def test_gradient_accumulation_equals_one_big_batch():
  batch = helpers.synthetic_batch(0, rows=16)
  shapes = helpers.shapes_of(batch)
  whole = helpers.make_trainer(num_devices=2)
  micro = helpers.make_trainer(num_devices=2, num_microbatches=4)
  state_a = whole.init_state(shapes)
  state_b = micro.init_state(shapes)
  for _ in range(2):
    state_a, metrics_a = whole.train_step(state_a, batch)
    state_b, metrics_b = micro.train_step(state_b, batch)
    assert float(metrics_b["loss"].value()) == pytest.approx(
        float(metrics_a["loss"].value()), rel=1e-5
    )
    assert float(metrics_b["grad_norm"].value()) == pytest.approx(
        float(metrics_a["grad_norm"].value()), rel=1e-4
    )
  for a, b in zip(jax.tree.leaves(state_a.params), jax.tree.leaves(state_b.params)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)


def test_microbatches_that_do_not_divide_the_batch_are_rejected():
  tr = helpers.make_trainer(num_devices=2, num_microbatches=3)
  batch = helpers.synthetic_batch(0, rows=8)
  state = tr.init_state(helpers.shapes_of(batch))
  with pytest.raises(ValueError, match="num_microbatches=3"):
    tr.train_step(state, batch)


def test_eval_metrics_match_a_numpy_cross_entropy():
  tr = helpers.make_trainer(num_devices=1)
  batch = helpers.synthetic_batch(3)
  state = tr.init_state(helpers.shapes_of(batch))
  values = tr.evaluate(state, [batch])
  logits = np.asarray(tr.model._logits(state.params, batch)[0], np.float64)
  log_probs = (
      logits
      - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
      - logits.max(-1, keepdims=True)
  )
  targets, weights = batch["decoder_target_tokens"], batch["decoder_loss_weights"]
  nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
  assert values["cross_entropy"] == pytest.approx((nll * weights).sum() / weights.sum(), rel=1e-5)
  accuracy = ((logits.argmax(-1) == targets) * weights).sum() / weights.sum()
  assert values["accuracy"] == pytest.approx(accuracy, abs=1e-6)


@pytest.mark.slow
def test_encoder_decoder_learns_to_copy_and_predicts():
  import dataclasses
  from model_zoo import dense, models

  model = models.EncoderDecoderModel(
      dense.EncoderDecoder(
          dataclasses.replace(helpers.TINY, tie_embeddings=False, position_encoding="relative_bias")
      )
  )
  tr = helpers.make_trainer(num_devices=2, model=model, learning_rate=3e-3)

  def copy_batch(i):
    rs = np.random.RandomState(i)
    tokens = rs.randint(2, 12, size=(8, 6)).astype(np.int32)
    targets = np.concatenate([tokens, np.ones((8, 1), np.int32)], axis=1)  # EOS = 1
    inputs = np.concatenate([np.zeros((8, 1), np.int32), targets[:, :-1]], axis=1)
    return {
        "encoder_input_tokens": targets,
        "decoder_target_tokens": targets,
        "decoder_input_tokens": inputs,
        "decoder_loss_weights": np.ones_like(targets),
    }

  state = tr.init_state(helpers.shapes_of(copy_batch(0)))
  losses = []
  for i in range(150):
    state, metrics = tr.train_step(state, copy_batch(i))
    losses.append(float(metrics["loss"].value()))
  assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
  batch = copy_batch(999)
  with tr.partitioner.context():
    predicted, _ = jax.jit(model.predict_batch)(state.params, batch)
  predicted = np.asarray(predicted)
  accuracy = np.mean(predicted == batch["decoder_target_tokens"])
  assert accuracy > 0.3, predicted[:2]  # chance is ~0.1
  # The cached greedy decode equals greedy decoding by full forward passes without a cache.
  rows, length = predicted.shape
  expected = np.zeros((rows, length), np.int32)
  done = np.zeros(rows, bool)
  for t in range(length):
    inputs = np.concatenate([np.zeros((rows, 1), np.int32), expected[:, :-1]], axis=1)
    full = {
        "encoder_input_tokens": batch["encoder_input_tokens"],
        "decoder_input_tokens": inputs,
        "decoder_target_tokens": np.ones_like(inputs),
    }
    logits = np.asarray(model._logits(state.params, full)[0])
    expected[:, t] = np.where(done, 0, logits[:, t].argmax(-1))
    done |= expected[:, t] == 1
  np.testing.assert_array_equal(predicted, expected)


@pytest.mark.parametrize("shape", [(8, 512, 24), (3, 5), (7,), ()])
def test_sum_of_squares_matches_numpy(shape):
  """The grad-norm's Gram-trace sum of squares, for sizes that split into rows of 8 and not."""
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  got = float(trainer_lib._sum_of_squares(jax.numpy.asarray(x)))
  assert got == pytest.approx(float(np.sum(x.astype(np.float64) ** 2)), rel=1e-5)
