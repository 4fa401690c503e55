"""SPAE through the Trainer: the LM's embedding table becomes the codebook and stays frozen,
gradient accumulation and filler rows count exactly, and the loss goes down."""

import jax
import numpy as np
import optax
import pytest

from tests.model_zoo.spae.tiny_spae import image_batch, tiny_spae
from tests.trainers import helpers
from trainers import checkpoints, optimizers, train
from trainers.initial_checkpoint import InitialCheckpoint

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
# gin/runs/spae.gin's rules, on a tiny LM (vocabulary 64, width 32).
ASSIGNMENT_MAP = [("codebook/embedding", "token_embedder/embedding"), (".*", None)]
FROZEN = ["^codebook/embedding$"]


def spae_for_tiny_lm(**overrides):
  return tiny_spae(vocab_size=64, lm_embed_dim=32, latent_dim=32, **overrides)


def frozen_codebook_adamw(schedule):
  return optimizers.trainable_only(optax.adamw(schedule, weight_decay=0.1), frozen_patterns=FROZEN)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
  """A tiny LM's MODEL_DIR after 2 steps (its embedding table is trained, not initial)."""
  model_dir = tmp_path_factory.mktemp("lm")
  params = helpers.save_trained_lm(model_dir, steps=2)
  return str(model_dir), np.asarray(params["token_embedder"]["embedding"])


def test_codebook_is_the_lm_table_and_gets_exactly_zero_updates(lm_dir, tmp_path, capfd):
  lm_path, lm_table = lm_dir
  batch = image_batch(rows=8)
  tr = helpers.make_trainer(
      num_devices=8, model=spae_for_tiny_lm(), optimizer=frozen_codebook_adamw
  )
  ckpt = checkpoints.Checkpointer(str(tmp_path / "spae"))
  try:
    initial = InitialCheckpoint(
        path=lm_path, assignment_map=ASSIGNMENT_MAP, by_reference=["codebook/embedding"]
    )
    state = train._restore_or_init(tr, ckpt, helpers.shapes_of(batch), initial)[0]
  finally:
    ckpt.close()
  assert "mapped  codebook/embedding <- token_embedder/embedding" in capfd.readouterr().out
  start = jax.device_get(state.params)
  np.testing.assert_array_equal(start["codebook"]["embedding"], lm_table)
  # No optimizer state for it: Adam's moments exist only for the trained parameters.
  moments = sum(np.size(x) for x in jax.tree.leaves(state.opt_state))
  trained = sum(np.size(x) for x in jax.tree.leaves(start)) - lm_table.size
  assert moments < 2 * trained + 100
  for step in range(3):
    state, _ = tr.train_step(state, image_batch(rows=8, seed=step))
  end = jax.device_get(state.params)
  np.testing.assert_array_equal(end["codebook"]["embedding"], lm_table)  # bit for bit
  changed = [
      not np.array_equal(a, b)
      for a, b in zip(jax.tree.leaves(start["encoder"]), jax.tree.leaves(end["encoder"]))
  ]
  assert all(changed)


@pytest.mark.slow
def test_weight_decay_alone_would_move_an_unfrozen_codebook():
  """The optimizer's mask is what freezes the table against weight decay (the model's
  stop_gradient only zeroes its gradient)."""
  batch = image_batch(rows=8)
  tr = helpers.make_trainer(
      num_devices=1,
      model=spae_for_tiny_lm(),
      optimizer=lambda s: optax.adamw(s, weight_decay=0.1),
  )
  state = tr.init_state(helpers.shapes_of(batch))
  table = np.asarray(jax.device_get(state.params["codebook"]["embedding"]))
  state, _ = tr.train_step(state, batch)
  assert not np.array_equal(jax.device_get(state.params["codebook"]["embedding"]), table)


@pytest.mark.slow
def test_microbatches_and_filler_rows_match_one_big_batch():
  batch = {**image_batch(rows=8), "example_weights": np.array([1, 1, 0, 1, 1, 1, 0, 1], "f4")}
  shapes = helpers.shapes_of(batch)
  # SGD: Adam's first step is lr x sign(gradient), which turns the rounding noise of the
  # gradients that are zero in exact arithmetic (a bias before a per-channel GroupNorm) into
  # whole steps.
  sgd = optax.sgd
  whole = helpers.make_trainer(num_devices=2, model=spae_for_tiny_lm(), optimizer=sgd)
  micro = helpers.make_trainer(
      num_devices=2, model=spae_for_tiny_lm(), num_microbatches=2, optimizer=sgd
  )
  state_a, state_b = whole.init_state(shapes), micro.init_state(shapes)
  state_a, metrics_a = whole.train_step(state_a, batch)
  state_b, metrics_b = micro.train_step(state_b, batch)
  for name in ("loss", "semantic", "reconstruction/l2_depth_3"):
    np.testing.assert_allclose(metrics_a[name].value(), metrics_b[name].value(), rtol=1e-5)
  assert float(metrics_a["target_tokens"].value()) == 6  # images that count
  for a, b in zip(
      jax.tree.leaves(jax.device_get(state_a.params)),
      jax.tree.leaves(jax.device_get(state_b.params)),
  ):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


@pytest.mark.slow
def test_the_loss_goes_down_on_a_fixed_batch():
  batch = image_batch(rows=8)
  tr = helpers.make_trainer(num_devices=1, model=spae_for_tiny_lm(), learning_rate=3e-3)
  state = tr.init_state(helpers.shapes_of(batch))
  losses = []
  for _ in range(30):
    state, metrics = tr.train_step(state, batch)
    losses.append(float(metrics["loss"].value()))
  assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.slow
def test_with_the_gan_term_both_players_learn_on_8_devices():
  """The discriminator comes to score real images above their reconstructions while the
  autoencoder's loss still falls."""
  batch = image_batch(rows=8)
  model = spae_for_tiny_lm(adversarial_weight=0.1)
  tr = helpers.make_trainer(model=model, learning_rate=3e-3)
  state = tr.init_state(helpers.shapes_of(batch))

  def margin(params):
    """Mean logit of the real images minus that of their full-depth reconstructions."""
    params = jax.device_get(params)
    fake = model.reconstruct(params, batch["image"])[-1]
    real_logits, fake_logits = (
        model.module.apply({"params": params}, x, method="discriminate")
        for x in (batch["image"], fake)
    )
    return float(np.mean(real_logits) - np.mean(fake_logits))

  losses = []
  before = margin(state.params)
  for _ in range(30):
    state, metrics = tr.train_step(state, batch)
    losses.append(float(metrics["loss"].value()))
  assert margin(state.params) > before + 0.1, (before, margin(state.params))
  assert losses[-1] < losses[0], losses
