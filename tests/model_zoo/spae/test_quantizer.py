"""The semantic pyramid and streaming average quantization against plain NumPy loops."""

import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo.errors import ConfigError
from model_zoo.spae import quantizer
from model_zoo.spae.pyramid import Pyramid


def numpy_saq(z, codes, layer_tokens):
  """SAQ position by position: layer l's token at block (i, j) reads z at the block's centre;
  its target is l z - the earlier tokens covering that position; the mean after layer l at
  every position is the mean of the tokens covering it."""
  batch, grid, _, _ = z.shape
  tokens, means = [], []
  chosen = []  # per layer: [batch, g, g] token indices
  for layer, count in enumerate(layer_tokens, start=1):
    side = int(round(count**0.5))
    stride = grid // side
    layer_tokens_out = np.zeros((batch, side, side), np.int64)
    for b in range(batch):
      for i in range(side):
        for j in range(side):
          y, x = i * stride + stride // 2, j * stride + stride // 2
          earlier = sum(
              codes[chosen[k][b, y // (grid // prev), x // (grid // prev)]]
              for k, prev in enumerate(int(round(n**0.5)) for n in layer_tokens[: layer - 1])
          )
          target = layer * z[b, y, x] - earlier
          layer_tokens_out[b, i, j] = np.argmin(((codes - target) ** 2).sum(-1))
    chosen.append(layer_tokens_out)
    tokens.append(layer_tokens_out)
    mean = np.zeros_like(z)
    for b in range(batch):
      for y in range(grid):
        for x in range(grid):
          mean[b, y, x] = np.mean(
              [
                  codes[
                      chosen[k][b, y * int(round(n**0.5)) // grid, x * int(round(n**0.5)) // grid]
                  ]
                  for k, n in enumerate(layer_tokens[:layer])
              ],
              axis=0,
          )
    means.append(mean)
  return tokens, means


@pytest.mark.parametrize("layer_tokens", [(1, 4, 16), (4, 16), (1, 16)])
def test_saq_matches_numpy_loops(layer_tokens):
  rng = np.random.default_rng(0)
  z = rng.normal(size=(3, 4, 4, 5))
  codes = rng.normal(size=(40, 5))
  got = quantizer.streaming_average_quantize(
      jnp.asarray(z, jnp.float32), jnp.asarray(codes, jnp.float32), Pyramid.of(layer_tokens)
  )
  want_tokens, want_means = numpy_saq(z, codes, layer_tokens)
  for layer in range(len(layer_tokens)):
    np.testing.assert_array_equal(got.tokens[layer], want_tokens[layer])
    np.testing.assert_allclose(got.means[layer], want_means[layer], rtol=1e-5, atol=1e-5)


def test_saq_with_one_layer_is_nearest_neighbour_vq():
  rng = np.random.default_rng(1)
  z = rng.normal(size=(2, 4, 4, 6))
  codes = rng.normal(size=(50, 6))
  got = quantizer.streaming_average_quantize(
      jnp.asarray(z, jnp.float32), jnp.asarray(codes, jnp.float32), Pyramid.of((16,))
  )
  nearest = np.argmin(((z[..., None, :] - codes) ** 2).sum(-1), axis=-1)
  np.testing.assert_array_equal(got.tokens[0], nearest)
  np.testing.assert_allclose(got.means[0], codes[nearest], rtol=1e-6)


def test_saq_targets_are_the_residuals_of_the_running_sum():
  rng = np.random.default_rng(2)
  z = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
  codes = rng.normal(size=(30, 3)).astype(np.float32)
  pyramid = Pyramid.of((1, 4, 16))
  got = quantizer.streaming_average_quantize(jnp.asarray(z), jnp.asarray(codes), pyramid)
  # At the last layer (every position): target = 3 z - (the two earlier layers' codes).
  earlier = 2 * np.asarray(got.means[1])
  np.testing.assert_allclose(got.targets[2], 3 * z - earlier, rtol=1e-5, atol=1e-5)


def test_dequantize_inverts_the_token_choice():
  rng = np.random.default_rng(3)
  z = rng.normal(size=(2, 8, 8, 4)).astype(np.float32)
  codes = jnp.asarray(rng.normal(size=(64, 4)), jnp.float32)
  pyramid = Pyramid.of((1, 4, 16, 64))
  got = quantizer.streaming_average_quantize(jnp.asarray(z), codes, pyramid)
  for depth in range(1, 5):
    np.testing.assert_allclose(
        quantizer.dequantize(got.tokens[:depth], codes, pyramid), got.means[depth - 1], rtol=1e-6
    )


def test_pyramid_positions_are_dilated_block_centres():
  pyramid = Pyramid.of((1, 4, 16, 64))
  grid = np.arange(64).reshape(1, 8, 8)
  assert pyramid.subsample(grid, 0).tolist() == [[[36]]]  # (4, 4)
  np.testing.assert_array_equal(pyramid.subsample(grid, 1)[0], grid[0][2::4, 2::4])
  np.testing.assert_array_equal(pyramid.subsample(grid, 3), grid)
  assert pyramid.offsets() == [0, 1, 5, 21] and pyramid.num_tokens == 85
  block = np.asarray(pyramid.broadcast(np.array([[[1, 2], [3, 4]]]), 1))[0]
  assert block[:4, :4].tolist() == [[1] * 4] * 4 and block[4:, 4:].tolist() == [[4] * 4] * 4


@pytest.mark.parametrize("layer_tokens", [(1, 3), (4, 4), (16, 4), (9, 16), ()])
def test_pyramid_rejects_layers_that_do_not_nest(layer_tokens):
  with pytest.raises(ConfigError, match="layer_tokens"):
    Pyramid.of(layer_tokens)
