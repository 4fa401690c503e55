"""SPAE's loss terms, per example: reconstruction (L2 and a multi-scale structural term), the
semantic loss that pulls the upper pyramid layers toward the image's words, and the GAN
term's hinge losses."""

import jax
import jax.numpy as jnp
import numpy as np

from model_zoo.layers import types
from model_zoo.spae.quantizer import squared_distances

SSIM_SIGMA = 1.5  # Wang et al.'s Gaussian window
SSIM_TRUNCATE = 3.5  # the window's radius in sigmas (as scipy's and scikit-image's)
SSIM_K1, SSIM_K2 = 0.01, 0.03


def squared_error(x: types.Array, y: types.Array) -> types.Array:
  """Mean squared error per example [batch] of images [batch, h, w, c]."""
  return jnp.mean(jnp.square(x.astype(jnp.float32) - y.astype(jnp.float32)), axis=(1, 2, 3))


def _blur_matrix(size: int) -> np.ndarray:
  """[size, size]: row i is the Gaussian window around i (sigma SSIM_SIGMA, radius
  SSIM_TRUNCATE sigmas) over a signal mirrored at its edges (scipy's "reflect": d c b a |
  a b c d), so filtering is one small matmul per axis (XLA's CPU depthwise convolutions are
  ~10x slower)."""
  radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / SSIM_SIGMA) ** 2)
  taps /= taps.sum()
  matrix = np.zeros((size, size))
  for i in range(size):
    for offset, tap in zip(range(-radius, radius + 1), taps):
      j = i + offset
      while not 0 <= j < size:  # mirror until inside (several times if size < radius)
        j = -j - 1 if j < 0 else 2 * size - j - 1
      matrix[i, j] += tap
  return matrix


def _gaussian_blur(x: types.Array) -> types.Array:
  """Separable Gaussian filter over h and w of [batch, h, w, c] (see _blur_matrix)."""
  rows = jnp.asarray(_blur_matrix(x.shape[1]), jnp.float32)
  cols = jnp.asarray(_blur_matrix(x.shape[2]), jnp.float32)
  precision = jax.lax.Precision.HIGHEST
  x = jnp.einsum("ih,bhwc->biwc", rows, x, precision=precision)
  return jnp.einsum("jw,biwc->bijc", cols, x, precision=precision)


def ssim(x: types.Array, y: types.Array) -> types.Array:
  """Structural similarity per example [batch] of images [batch, h, w, c] in [0, 1]: the mean
  over channels and over positions a full window away from the edges of Wang et al.'s SSIM
  with a Gaussian window (sigma 1.5), population statistics (scikit-image's
  structural_similarity with gaussian_weights=True, use_sample_covariance=False,
  data_range=1)."""
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  # One filter pass over the five moments' maps, stacked on the channel axis.
  moments = _gaussian_blur(jnp.concatenate([x, y, x * x, y * y, x * y], axis=-1))
  mu_x, mu_y, xx, yy, xy = jnp.split(moments, 5, axis=-1)
  var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
  c1, c2 = SSIM_K1**2, SSIM_K2**2
  index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
      (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
  )
  crop = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
  inner = index[:, crop : index.shape[1] - crop, crop : index.shape[2] - crop]
  if inner.shape[1] < 1 or inner.shape[2] < 1:
    inner = index  # an image smaller than a window: every position counts
  return jnp.mean(inner, axis=(1, 2, 3))


def _halve(x: types.Array) -> types.Array:
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def structural_loss(x: types.Array, y: types.Array, scales: int) -> types.Array:
  """1 - the mean SSIM over `scales` resolutions (full, then halved by 2x2 averages each
  time), per example [batch]: blur-tolerant where L2 is not, sharp at the coarse scales."""
  total = jnp.zeros(x.shape[:1], jnp.float32)
  for scale in range(scales):
    if scale:
      x, y = _halve(x), _halve(y)
    total = total + ssim(x, y)
  return 1 - total / scales


def discriminator_hinge_loss(real_logits: types.Array, fake_logits: types.Array) -> types.Array:
  """The discriminator's hinge loss per example [batch] of patch logits [batch, ...]: mean
  relu(1 - real) + mean relu(1 + fake)."""
  axes = tuple(range(1, real_logits.ndim))
  return jnp.mean(jax.nn.relu(1 - real_logits), axis=axes) + jnp.mean(
      jax.nn.relu(1 + fake_logits), axis=axes
  )


def generator_hinge_loss(fake_logits: types.Array) -> types.Array:
  """The generator's side per example [batch]: minus the mean logit of its images."""
  return -jnp.mean(fake_logits, axis=tuple(range(1, fake_logits.ndim)))


def semantic_loss(
    residuals: types.Array,
    codes: types.Array,
    relevant: types.Array,
    temperature: float,
    any_relevant: bool = False,
) -> types.Array:
  """Cross entropy of the relevant codes under softmax(-||residual - code||^2 / temperature),
  per example [batch], averaged over the example's positions.

  residuals [batch, positions, dim]; codes [num_codes, dim]; relevant [batch, num_codes]
  (1 for each code relevant to the image, e.g. the pieces of its word; a row of zeros gives
  0). Per position: the mean over the relevant codes of -log p(code) (SPAE's), which pulls
  the residual toward their centroid; or with `any_relevant`, -log of their total
  probability, which pulls it toward whichever relevant code is nearest, so one token can be
  a piece of the word.
  """
  logits = -squared_distances(residuals, codes) / temperature
  log_probs = jax.nn.log_softmax(logits, axis=-1)  # [batch, positions, codes]
  has_codes = jnp.sum(relevant, -1) > 0  # [batch]
  if any_relevant:
    masked = jnp.where(relevant[:, None, :] > 0, log_probs, -jnp.inf)
    masked = jnp.where(has_codes[:, None, None], masked, 0.0)  # no -inf rows: no NaN
    per_position = -jax.nn.logsumexp(masked, axis=-1)
    return jnp.where(has_codes, jnp.mean(per_position, axis=1), 0.0)
  weights = relevant / jnp.maximum(jnp.sum(relevant, -1, keepdims=True), 1)
  return -jnp.mean(jnp.einsum("bpc,bc->bp", log_probs, weights.astype(jnp.float32)), axis=1)


def relevance(semantic_tokens: types.Array, first_code_id: int, num_codes: int) -> types.Array:
  """[batch, num_codes] 1 at the codes of the image's word pieces (LM ids, 0-padded; ids
  outside the codebook do not count)."""
  codes = semantic_tokens - first_code_id
  valid = (semantic_tokens > 0) & (codes >= 0) & (codes < num_codes)
  hits = jax.nn.one_hot(jnp.where(valid, codes, num_codes), num_codes + 1)[..., :num_codes]
  return jnp.minimum(jnp.sum(hits, axis=1), 1)
