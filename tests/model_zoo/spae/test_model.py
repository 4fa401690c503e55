"""SPAE's Model API: errors at the boundary, tokens <-> images, weighted per-image losses."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo.errors import ConfigError
from model_zoo.spae.config import SpaeConfig
from tests.model_zoo.spae.tiny_spae import image_batch, tiny_spae


@pytest.fixture(scope="module")
def model_and_params():
  model = tiny_spae()
  return model, nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), image_batch()))


def jitted_terms(model, params, batch):
  return jax.tree.map(np.asarray, jax.jit(model.example_terms)(params, batch))


def test_codebook_width_differs_from_latent_says_how_to_project():
  with pytest.raises(ConfigError, match="project_codebook=True"):
    SpaeConfig(lm_embed_dim=128, latent_dim=64)
  assert SpaeConfig(lm_embed_dim=128, latent_dim=64, project_codebook=True).num_codes == 8317


def test_image_side_that_misses_the_pyramid_names_the_fix(model_and_params):
  model, params = model_and_params
  with pytest.raises(ConfigError, match=r"must be 16 pixels a side.*TASK_FEATURE_LENGTHS"):
    model.loss_fn(params, image_batch(side=20))
  with pytest.raises(ConfigError, match=r"square images \[batch, side, side, 3\]"):
    model.loss_fn(params, {"image": np.zeros((2, 16, 16, 1), np.float32)})


def test_codes_outside_the_vocabulary_are_refused():
  with pytest.raises(ConfigError, match="range of the LM's vocabulary of 40"):
    tiny_spae(last_code_id=41)


def test_encode_then_decode_each_prefix_equals_the_reconstructions(model_and_params):
  model, params = model_and_params
  image = jnp.asarray(image_batch()["image"])
  ids = np.asarray(jax.jit(model.encode)(params, image))
  assert ids.shape == (4, 21)
  assert ids.min() >= 3 and ids.max() < 40  # LM ids of the codebook
  reconstructions = jax.jit(model.reconstruct)(params, image)
  for depth, count in enumerate((1, 5, 21)):
    np.testing.assert_allclose(
        model.decode(params, ids[:, :count]), reconstructions[depth], rtol=1e-5, atol=1e-6
    )


def test_decode_refuses_partial_layers_and_foreign_ids(model_and_params):
  model, params = model_and_params
  ids = np.asarray(jax.jit(model.encode)(params, jnp.asarray(image_batch()["image"])))
  with pytest.raises(ConfigError, match=r"expected one of \[1, 5, 21\]"):
    model.decode(params, ids[:, :4])
  bad = ids.copy()
  bad[0, 0] = 1  # EOS: not a code
  with pytest.raises(ConfigError, match=r"codebook \[3, 40\).*\[1\]"):
    model.decode(params, bad)


def test_loss_is_the_weighted_mean_of_per_image_terms(model_and_params):
  model, params = model_and_params
  batch = image_batch(rows=4)
  terms = jitted_terms(model, params, batch)
  weights = np.array([1.0, 0.0, 1.0, 1.0], np.float32)
  loss_fn = jax.jit(model.loss_fn)
  loss, metrics = loss_fn(params, {**batch, "example_weights": weights})
  np.testing.assert_allclose(loss, np.sum(terms["loss"] * weights) / 3, rtol=1e-5)
  np.testing.assert_allclose(
      metrics["reconstruction/l2_depth_2"].value(),
      np.sum(terms["reconstruction/l2_depth_2"] * weights) / 3,
      rtol=1e-5,
  )
  # The filler row's content changes nothing.
  other = {**batch, "example_weights": weights, "image": batch["image"].copy()}
  other["image"][1] = 1 - other["image"][1]
  np.testing.assert_allclose(loss_fn(params, other)[0], loss, rtol=1e-6)
  # A given normalizer (gradient accumulation's whole-batch weight) divides the sum.
  np.testing.assert_allclose(
      loss_fn(params, {**batch, "example_weights": weights}, None, 6.0)[0],
      loss / 2,
      rtol=1e-5,
  )


def test_loss_adds_every_term_with_its_weight(model_and_params):
  model, params = model_and_params
  cfg = model.config
  terms = jitted_terms(model, params, image_batch())
  reconstruction = np.mean(
      [
          terms[f"reconstruction/l2_depth_{d}"]
          + cfg.structural_weight * terms[f"reconstruction/structural_depth_{d}"]
          for d in (1, 2, 3)
      ],
      axis=0,
  )
  want = (
      reconstruction
      + cfg.commitment_weight * terms["commitment"]
      + cfg.codebook_weight * terms["codebook"]
      + cfg.semantic_weight * terms["semantic"]
  )
  np.testing.assert_allclose(terms["loss"], want, rtol=1e-5)


def test_semantic_metrics_count_only_images_with_words(model_and_params):
  model, params = model_and_params
  batch = image_batch(rows=4)
  batch["semantic_tokens"][1:] = 0  # only the first image has a word
  terms = jitted_terms(model, params, batch)
  _, metrics = jax.jit(model.loss_fn)(params, batch)
  np.testing.assert_allclose(metrics["semantic"].value(), terms["semantic"][0], rtol=1e-5)
  assert float(metrics["semantic"].count) == 1.0
  top = np.asarray(jax.jit(model.encode)(params, jnp.asarray(batch["image"])))[0, 0]
  assert float(metrics["semantic_hit"].value()) == float(top in batch["semantic_tokens"][0])


def test_no_gradient_reaches_the_codebook_but_the_projection_learns():
  model = tiny_spae(
      project_codebook=True, lm_embed_dim=12, num_res_blocks=1, num_attention_blocks=1
  )
  batch = image_batch()
  params = nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(1), batch))
  grads = jax.jit(jax.grad(lambda p: model.loss_fn(p, batch)[0]))(params)
  assert not np.any(np.asarray(grads["codebook"]["embedding"]))
  assert np.any(np.asarray(grads["codebook"]["projection"]["kernel"]))
  for path, grad in jax.tree_util.tree_leaves_with_path(grads):
    name = jax.tree_util.keystr(path)
    assert np.any(np.asarray(grad)) == ("embedding" not in name), name


def test_no_discriminator_without_the_gan_term(model_and_params):
  _, params = model_and_params
  assert "discriminator" not in params
  with pytest.raises(ConfigError, match="adversarial_weight=-1"):
    SpaeConfig(adversarial_weight=-1.0)


def test_gan_term_trains_each_side_on_its_own_loss_only():
  """One optimizer step serves both players: the discriminator's gradient is that of its
  hinge loss on real images and fixed reconstructions; the encoder's and decoder's is the
  plain loss's plus adversarial_weight x the generator's (nothing from the discriminator's
  loss), so it is affine in the weight from the no-GAN gradient."""
  batch = image_batch()
  image = jnp.asarray(batch["image"])
  models = {w: tiny_spae(adversarial_weight=w) for w in (0.0, 1.0, 2.0)}
  params = nn.unbox(jax.jit(models[1.0].init)(jax.random.PRNGKey(2), batch))
  assert set(params["discriminator"]) == {"downsample_0", "downsample_1", "GroupNorm_0", "to_logit"}
  grads = {}
  for weight, model in models.items():
    own = params if weight else {k: v for k, v in params.items() if k != "discriminator"}
    grads[weight] = jax.jit(jax.grad(lambda p, m=model: m.loss_fn(p, batch)[0]))(own)
  model = models[1.0]
  fake = jax.jit(model.reconstruct)(params, image).reshape((-1,) + image.shape[1:])

  def hinge(discriminator):
    variables = {"params": {**params, "discriminator": discriminator}}
    real = model.module.apply(variables, image, method="discriminate")
    fake_logits = model.module.apply(variables, fake, method="discriminate")
    return jnp.mean(jax.nn.relu(1 - real)) + jnp.mean(jax.nn.relu(1 + fake_logits))

  want = jax.jit(jax.grad(hinge))(params["discriminator"])
  for weight in (1.0, 2.0):
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7),
        grads[weight]["discriminator"],
        want,
    )
  decoder = {w: np.asarray(g["decoder"]["to_image"]["kernel"]) for w, g in grads.items()}
  generator_part = decoder[2.0] - decoder[1.0]
  assert np.abs(generator_part).max() > 1e-4  # the GAN term does move the decoder
  np.testing.assert_allclose(decoder[1.0] - decoder[0.0], generator_part, atol=1e-6)


def test_predict_batch_gives_tokens_and_minus_the_full_depth_error(model_and_params):
  model, params = model_and_params
  batch = image_batch()
  tokens, scores = jax.jit(model.predict_batch)(params, batch)
  image = jnp.asarray(batch["image"])
  np.testing.assert_array_equal(tokens, jax.jit(model.encode)(params, image))
  full = np.asarray(jax.jit(model.reconstruct)(params, image)[-1])
  np.testing.assert_allclose(
      scores, -np.mean((full - batch["image"]) ** 2, axis=(1, 2, 3)), rtol=1e-5
  )
