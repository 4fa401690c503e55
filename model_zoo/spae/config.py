"""Hyper-parameters of a SPAE model, one gin-configurable record."""

import dataclasses
from typing import Optional

import gin
import jax.numpy as jnp

from model_zoo.errors import ConfigError
from model_zoo.spae.pyramid import Pyramid


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SpaeConfig:
  """Sizes, pyramid and loss weights of a Semantic Pyramid AutoEncoder (model_zoo/spae)."""

  # The frozen LM's input-embedding table is the codebook: its vocabulary and width.
  vocab_size: int = 8320
  lm_embed_dim: int = 128
  # Codes are the LM's ids in [first_code_id, last_code_id): no padding/EOS/UNK, no rows an
  # LM pads its table with. None: up to vocab_size.
  first_code_id: int = 3
  last_code_id: Optional[int] = None
  # A trainable linear map from the LM's width to the latent's; needed when they differ.
  project_codebook: bool = False
  latent_dim: int = 128
  image_channels: int = 3
  channels: int = 32  # the encoder's first width; each resolution multiplies it
  channel_multipliers: tuple[int, ...] = (1, 2, 2)  # one per resolution, each halving the side
  num_res_blocks: int = 1  # per resolution
  num_attention_blocks: int = 1  # self-attention over the latent grid (a global view)
  layer_tokens: tuple[int, ...] = (1, 4, 16, 64)
  # Loss: the reconstruction's L2 + structural_weight x (1 - multi-scale SSIM) at every
  # pyramid depth, commitment and codebook terms, and the semantic loss on the first
  # `semantic_layers` layers (softmax over -||residual - code||^2 / semantic_temperature).
  structural_weight: float = 0.1
  structural_scales: int = 2
  commitment_weight: float = 0.25
  codebook_weight: float = 1.0
  semantic_weight: float = 0.1
  semantic_layers: int = 1
  semantic_temperature: float = 1.0
  # Per position, the mean of -log p over the image's relevant codes (SPAE's; toward their
  # centroid), or with semantic_any, -log of their total p (toward the nearest of them).
  semantic_any: bool = False
  # The optional GAN term (VQGAN's): adversarial_weight x the generator's hinge loss against
  # a patch discriminator of `discriminator_layers` stride-2 convolutions from
  # `discriminator_channels` wide, which learns at the same step from its own hinge loss.
  # 0: no discriminator (no parameters).
  adversarial_weight: float = 0.0
  discriminator_channels: int = 16
  discriminator_layers: int = 2
  dtype: str = "float32"  # activations
  param_dtype: str = "float32"

  def __post_init__(self):
    Pyramid.of(self.layer_tokens)  # names a bad pyramid
    stop = self.code_stop
    if not 0 <= self.first_code_id < stop <= self.vocab_size:
      raise ConfigError(
          f"SpaeConfig codes [{self.first_code_id}, {self.last_code_id}) must be a non-empty "
          f"range of the LM's vocabulary of {self.vocab_size} (SpaeConfig.vocab_size)."
      )
    if not self.project_codebook and self.lm_embed_dim != self.latent_dim:
      raise ConfigError(
          f"The codebook (the LM's embeddings) has dimension SpaeConfig.lm_embed_dim="
          f"{self.lm_embed_dim} but the encoder's latent has SpaeConfig.latent_dim="
          f"{self.latent_dim}. Set SpaeConfig.project_codebook=True (a trainable linear "
          f"projection from {self.lm_embed_dim} to {self.latent_dim}) or latent_dim="
          f"{self.lm_embed_dim}."
      )
    if not 0 <= self.semantic_layers <= len(self.layer_tokens):
      raise ConfigError(
          f"SpaeConfig.semantic_layers={self.semantic_layers} must be between 0 and the "
          f"pyramid's {len(self.layer_tokens)} layers."
      )
    if self.adversarial_weight < 0 or self.discriminator_layers < 1:
      raise ConfigError(
          f"SpaeConfig.adversarial_weight={self.adversarial_weight} must be >= 0 (0: no GAN "
          f"term) and discriminator_layers={self.discriminator_layers} >= 1."
      )
    if not 1 <= self.structural_scales:
      raise ConfigError(f"SpaeConfig.structural_scales={self.structural_scales} must be >= 1.")

  @property
  def code_stop(self) -> int:
    return self.vocab_size if self.last_code_id is None else self.last_code_id

  @property
  def num_codes(self) -> int:
    return self.code_stop - self.first_code_id

  @property
  def pyramid(self) -> Pyramid:
    return Pyramid.of(self.layer_tokens)

  @property
  def downsampling(self) -> int:
    """Image pixels per latent position along a side."""
    return 2 ** (len(self.channel_multipliers) - 1)

  @property
  def image_side(self) -> int:
    """The only image side this pyramid fits: the latent grid's side times the downsampling."""
    return self.pyramid.grid * self.downsampling

  @property
  def activation_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def parameter_dtype(self):
    return jnp.dtype(self.param_dtype)
