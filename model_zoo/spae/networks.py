"""SPAE's convolutional encoder and decoder (VQGAN's shape at small sizes) and its codebook.

Encoder: a 3x3 stem, then per resolution `num_res_blocks` residual blocks (GroupNorm, swish,
3x3 convolutions) and a stride-2 convolution between resolutions, then self-attention over
the latent grid (every position sees the whole image: the pyramid's top layer reads one
position) and a 1x1 map to the latent width. The decoder mirrors it with nearest-neighbour
upsampling. The codebook is the frozen LM's input-embedding table (`codebook/embedding`,
filled from an LM checkpoint and never trained), optionally through a trainable projection.
The optional discriminator of the GAN term is a PatchGAN: one real/fake logit per patch.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from model_zoo.layers import types
from model_zoo.spae.config import SpaeConfig

CONV_AXES = ("conv_height", "conv_width", "conv_in", "conv_out")


def _conv(cfg: SpaeConfig, features: int, kernel: int = 3, stride: int = 1, name=None) -> nn.Conv:
  return nn.Conv(
      features,
      (kernel, kernel),
      strides=(stride, stride),
      padding="SAME",
      dtype=cfg.activation_dtype,
      param_dtype=cfg.parameter_dtype,
      kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), CONV_AXES),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
      name=name,
  )


def _norm(cfg: SpaeConfig, channels: int, name=None) -> nn.GroupNorm:
  return nn.GroupNorm(
      num_groups=next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0),
      dtype=cfg.activation_dtype,
      param_dtype=cfg.parameter_dtype,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)),
      name=name,
  )


class ResBlock(nn.Module):
  config: SpaeConfig
  features: int

  @nn.compact
  def __call__(self, x: types.Array) -> types.Array:
    cfg = self.config
    h = _conv(cfg, self.features)(nn.swish(_norm(cfg, x.shape[-1])(x)))
    h = _conv(cfg, self.features)(nn.swish(_norm(cfg, self.features)(h)))
    if x.shape[-1] != self.features:
      x = _conv(cfg, self.features, kernel=1, name="shortcut")(x)
    return x + h


class AttentionBlock(nn.Module):
  """Single-head self-attention over every grid position, residual."""

  config: SpaeConfig

  @nn.compact
  def __call__(self, x: types.Array) -> types.Array:
    cfg = self.config
    batch, height, width, channels = x.shape
    h = _norm(cfg, channels)(x)
    q, k, v = (
        _conv(cfg, channels, kernel=1, name=n)(h).reshape(batch, height * width, channels)
        for n in "qkv"
    )
    weights = jnp.einsum("bqc,bkc->bqk", q, k).astype(jnp.float32) / jnp.sqrt(channels)
    h = jnp.einsum("bqk,bkc->bqc", jax.nn.softmax(weights, -1).astype(v.dtype), v)
    return x + _conv(cfg, channels, kernel=1, name="out")(h.reshape(x.shape))


class Encoder(nn.Module):
  """Images [batch, side, side, channels] in [0, 1] -> latents [batch, grid, grid, latent]."""

  config: SpaeConfig

  @nn.compact
  def __call__(self, image: types.Array) -> types.Array:
    cfg = self.config
    x = _conv(cfg, cfg.channels, name="stem")(image.astype(cfg.activation_dtype) * 2 - 1)
    for level, multiplier in enumerate(cfg.channel_multipliers):
      for _ in range(cfg.num_res_blocks):
        x = ResBlock(cfg, cfg.channels * multiplier)(x)
      if level < len(cfg.channel_multipliers) - 1:
        x = _conv(cfg, x.shape[-1], stride=2, name=f"downsample_{level}")(x)
    for _ in range(cfg.num_attention_blocks):
      x = ResBlock(cfg, x.shape[-1])(AttentionBlock(cfg)(x))
    return _conv(cfg, cfg.latent_dim, kernel=1, name="to_latent")(
        nn.swish(_norm(cfg, x.shape[-1])(x))
    )


class Decoder(nn.Module):
  """Latents [batch, grid, grid, latent] -> images [batch, side, side, channels] (unbounded;
  ~[0, 1] once trained)."""

  config: SpaeConfig

  @nn.compact
  def __call__(self, z: types.Array) -> types.Array:
    cfg = self.config
    widths = [cfg.channels * m for m in cfg.channel_multipliers]
    x = _conv(cfg, widths[-1], name="from_latent")(z.astype(cfg.activation_dtype))
    for _ in range(cfg.num_attention_blocks):
      x = ResBlock(cfg, widths[-1])(AttentionBlock(cfg)(x))
    for level in reversed(range(len(widths))):
      for _ in range(cfg.num_res_blocks):
        x = ResBlock(cfg, widths[level])(x)
      if level > 0:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        x = _conv(cfg, widths[level], name=f"upsample_{level}")(x)
    x = _conv(cfg, cfg.image_channels, name="to_image")(nn.swish(_norm(cfg, widths[0])(x)))
    return (x.astype(jnp.float32) + 1) / 2


class Discriminator(nn.Module):
  """Images [batch, side, side, channels] -> real/fake logits [batch, patches, patches]: a
  stride-2 convolution per layer (widths doubling, GroupNorm after the first, leaky ReLU),
  then a 3x3 convolution to one logit per patch."""

  config: SpaeConfig

  @nn.compact
  def __call__(self, image: types.Array) -> types.Array:
    cfg = self.config
    x = image.astype(cfg.activation_dtype) * 2 - 1
    for layer in range(cfg.discriminator_layers):
      width = cfg.discriminator_channels * 2**layer
      x = _conv(cfg, width, kernel=4, stride=2, name=f"downsample_{layer}")(x)
      if layer:
        x = _norm(cfg, width)(x)
      x = nn.leaky_relu(x, 0.2)
    return _conv(cfg, 1, name="to_logit")(x)[..., 0].astype(jnp.float32)


class Codebook(nn.Module):
  """The frozen LM's embeddings of the code ids, in the latent's width."""

  config: SpaeConfig

  @nn.compact
  def __call__(self) -> types.Array:
    """[num_codes, latent_dim]: row c is the code of LM id first_code_id + c."""
    cfg = self.config
    table = self.param(
        "embedding",
        nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
        (cfg.vocab_size, cfg.lm_embed_dim),
        cfg.parameter_dtype,
    )
    # Frozen twice over: no gradient here, and the run's optimizer leaves it out
    # (gin/runs/spae.gin), so weight decay cannot move it either.
    codes = jax.lax.stop_gradient(table[cfg.first_code_id : cfg.code_stop]).astype(jnp.float32)
    if cfg.project_codebook:
      codes = nn.Dense(
          cfg.latent_dim,
          use_bias=False,
          dtype=jnp.float32,
          param_dtype=cfg.parameter_dtype,
          kernel_init=nn.with_logical_partitioning(
              nn.initializers.lecun_normal(), ("embed", "latent")
          ),
          name="projection",
      )(codes)
    return codes
