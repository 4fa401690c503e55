"""SPAE's loss terms, per example: reconstruction (L2 and a multi-scale structural term) and
the semantic loss that pulls the upper pyramid layers toward the image's words."""

import jax
import jax.numpy as jnp

from model_zoo.layers import types
from model_zoo.spae.quantizer import squared_distances

SSIM_SIGMA = 1.5  # Wang et al.'s Gaussian window
SSIM_TRUNCATE = 3.5  # the window's radius in sigmas (as scipy's and scikit-image's)
SSIM_K1, SSIM_K2 = 0.01, 0.03


def squared_error(x: types.Array, y: types.Array) -> types.Array:
  """Mean squared error per example [batch] of images [batch, h, w, c]."""
  return jnp.mean(jnp.square(x.astype(jnp.float32) - y.astype(jnp.float32)), axis=(1, 2, 3))


def _gaussian_blur(x: types.Array) -> types.Array:
  """Separable Gaussian filter over h and w of [batch, h, w, c], edges mirrored (scipy's
  "reflect": d c b a | a b c d): two depthwise convolutions."""
  radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
  taps = jnp.exp(-0.5 * (jnp.arange(-radius, radius + 1) / SSIM_SIGMA) ** 2)
  taps = taps / jnp.sum(taps)
  channels = x.shape[-1]
  x = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="symmetric")
  for kernel in (taps[:, None], taps[None, :]):  # rows, then columns
    x = jax.lax.conv_general_dilated(
        x,
        jnp.tile(kernel[:, :, None, None], (1, 1, 1, channels)),
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
        precision=jax.lax.Precision.HIGHEST,
    )
  return x


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


def semantic_loss(
    residuals: types.Array, codes: types.Array, relevant: types.Array, temperature: float
) -> types.Array:
  """Cross entropy of the relevant codes under softmax(-||residual - code||^2 / temperature),
  per example [batch], averaged over the example's positions and its relevant codes.

  residuals [batch, positions, dim]; codes [num_codes, dim]; relevant [batch, num_codes]
  (1 for each code relevant to the image, e.g. the pieces of its word; a row of zeros gives
  0).
  """
  logits = -squared_distances(residuals, codes) / temperature
  log_probs = jax.nn.log_softmax(logits, axis=-1)  # [batch, positions, codes]
  weights = relevant / jnp.maximum(jnp.sum(relevant, -1, keepdims=True), 1)
  return -jnp.mean(jnp.einsum("bpc,bc->bp", log_probs, weights.astype(jnp.float32)), axis=1)


def relevance(semantic_tokens: types.Array, first_code_id: int, num_codes: int) -> types.Array:
  """[batch, num_codes] 1 at the codes of the image's word pieces (LM ids, 0-padded; ids
  outside the codebook do not count)."""
  codes = semantic_tokens - first_code_id
  valid = (semantic_tokens > 0) & (codes >= 0) & (codes < num_codes)
  hits = jax.nn.one_hot(jnp.where(valid, codes, num_codes), num_codes + 1)[..., :num_codes]
  return jnp.minimum(jnp.sum(hits, axis=1), 1)
