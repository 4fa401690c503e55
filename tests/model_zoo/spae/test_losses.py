"""SPAE's loss terms against independent references: scikit-image's SSIM, NumPy softmax."""

import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from model_zoo.spae import losses


def skimage_ssim(x, y):
  return structural_similarity(
      x,
      y,
      gaussian_weights=True,
      sigma=1.5,
      use_sample_covariance=False,
      data_range=1.0,
      channel_axis=-1,
  )


@pytest.mark.parametrize("side", [32, 16])
def test_ssim_matches_scikit_image(side):
  rng = np.random.default_rng(0)
  x = rng.random((3, side, side, 3))
  y = np.clip(x + rng.normal(scale=[[[[0.02]]], [[[0.2]]], [[[0.5]]]], size=x.shape), 0, 1)
  got = np.asarray(losses.ssim(jnp.asarray(x), jnp.asarray(y)))
  want = [skimage_ssim(a, b) for a, b in zip(x, y)]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  assert got[0] > got[1] > got[2]  # more noise, less similar


def test_structural_loss_averages_ssim_over_halved_scales():
  rng = np.random.default_rng(1)
  x = rng.random((2, 32, 32, 3))
  y = np.clip(x + rng.normal(scale=0.1, size=x.shape), 0, 1)

  def halve(a):
    return a.reshape(a.shape[0], a.shape[1] // 2, 2, a.shape[2] // 2, 2, 3).mean(axis=(2, 4))

  want = 1 - np.mean(
      [
          [skimage_ssim(a, b) for a, b in zip(x, y)],
          [skimage_ssim(a, b) for a, b in zip(halve(x), halve(y))],
      ],
      axis=0,
  )
  got = losses.structural_loss(jnp.asarray(x), jnp.asarray(y), scales=2)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(
      losses.structural_loss(jnp.asarray(x), jnp.asarray(x), 2), 0, atol=1e-5
  )


def test_squared_error_is_per_example():
  x = np.zeros((2, 4, 4, 3), np.float32)
  y = x.copy()
  y[1, 0, 0, 0] = 4.0
  np.testing.assert_allclose(losses.squared_error(x, y), [0.0, 16.0 / 48])


@pytest.mark.parametrize("any_relevant", [False, True])
def test_semantic_loss_is_cross_entropy_over_negative_squared_distances(any_relevant):
  """Per position: the mean of -log p over the relevant codes, or -log of their summed p."""
  rng = np.random.default_rng(2)
  residuals = rng.normal(size=(2, 3, 4))
  codes = rng.normal(size=(6, 4))
  relevant = np.array([[0, 1, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0]], np.float32)
  got = losses.semantic_loss(
      jnp.asarray(residuals),
      jnp.asarray(codes),
      jnp.asarray(relevant),
      temperature=0.5,
      any_relevant=any_relevant,
  )
  logits = -((residuals[:, :, None] - codes) ** 2).sum(-1) / 0.5
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  per_position = [
      -np.log(probs[0, p, [1, 3, 4]].sum())
      if any_relevant
      else -np.log(probs[0, p, [1, 3, 4]]).mean()
      for p in range(3)
  ]
  np.testing.assert_allclose(got, [np.mean(per_position), 0.0], rtol=1e-5)


def test_relevance_marks_the_codes_of_the_word_pieces():
  tokens = jnp.array([[5, 7, 0], [2, 12, 5], [0, 0, 0]])  # codes are ids 3..11
  got = np.asarray(losses.relevance(tokens, first_code_id=3, num_codes=9))
  want = np.zeros((3, 9))
  want[0, [2, 4]] = 1
  want[1, 2] = 1  # id 2 below the codebook, 12 above it
  np.testing.assert_array_equal(got, want)


def test_hinge_losses_per_example_match_numpy():
  rng = np.random.default_rng(3)
  real, fake = rng.normal(size=(2, 3, 3)) * 2, rng.normal(size=(2, 3, 3)) * 2
  want = [np.mean(np.maximum(0, 1 - real[b])) + np.mean(np.maximum(0, 1 + fake[b])) for b in (0, 1)]
  got = losses.discriminator_hinge_loss(jnp.asarray(real), jnp.asarray(fake))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(
      losses.generator_hinge_loss(jnp.asarray(fake)), -fake.mean(axis=(1, 2)), rtol=1e-6
  )
