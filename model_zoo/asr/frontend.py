"""The convolutional frontend that turns 10 ms log-mel frames into encoder positions.

Two 3x3 convolutions of stride 2 over (time, mel), each followed by ReLU, then a projection
of (mel / 4) x channels to the model width: one encoder position per 40 ms, so a 5 s
utterance is 125 positions instead of 500 (as Conformer and ESPnet's Transformer frontends
do). Padding frames are zeroed before each convolution, so a row's outputs do not depend on
how much padding its batch adds; the convolutions pad one zero frame on each side whatever
the length (XLA's "SAME" would pad an even length on the right only, shifting every window
when a batch's padded length changes parity).
"""

import flax.linen as nn
import jax.numpy as jnp

from model_zoo.layers import linear, types

_CONV_LAYERS = 2
SUBSAMPLING = 2**_CONV_LAYERS  # frames per encoder position


def subsampled_mask(mask: types.Array) -> types.Array:
  """The mask [batch, ceil(frames / 4)] of the positions that start on a real frame."""
  return mask[:, ::SUBSAMPLING]


class ConvSubsampling(nn.Module):
  """features [batch, frames, mels] and mask [batch, frames] -> [batch, positions, emb_dim]."""

  emb_dim: int
  channels: int = 64
  dtype: types.DType = jnp.float32
  param_dtype: types.DType = jnp.float32

  @nn.compact
  def __call__(self, features: types.Array, mask: types.Array) -> types.Array:
    x = (features * mask[..., None]).astype(self.dtype)[..., None]  # [batch, frames, mels, 1]
    for i in range(_CONV_LAYERS):
      x = nn.Conv(
          self.channels,
          (3, 3),
          strides=(2, 2),
          padding=((1, 1), (1, 1)),
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          kernel_init=nn.with_logical_partitioning(
              nn.linear.default_kernel_init, (None, None, None, None)
          ),
          bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
          name=f"conv_{i}",
      )(x)
      mask = mask[:, ::2]
      x = nn.relu(x) * mask[:, :, None, None].astype(self.dtype)
    batch, positions, mels, channels = x.shape
    x = linear.DenseGeneral(
        self.emb_dim,
        (None, "embed"),
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name="projection",
    )(x.reshape(batch, positions, mels * channels))
    return x * mask[..., None].astype(self.dtype)
