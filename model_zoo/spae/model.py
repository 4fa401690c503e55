"""SPAE as a Model the Trainer runs: images -> pyramid tokens of a frozen LM's vocabulary ->
images, with the Model API's loss_fn / score_batch / predict_batch.

Training reconstructs every image from every prefix of the pyramid (depth 1..L, one decoder
pass over all depths), with straight-through gradients to the encoder, so each depth is a
reconstruction of its own. Per example and depth: L2 + structural_weight x the multi-scale
structural term; plus commitment (the encoder toward its SAQ reconstruction), the codebook
term (the reconstruction toward the encoder: only a projection learns from it) and the
semantic loss on the first `semantic_layers` layers; with adversarial_weight, the GAN term.
Terms are per image and weighted by `example_weights`, so microbatches and filler rows count
exactly.

The GAN term trains both sides in one step under the Trainer's one optimizer: the loss is
adversarial_weight x the generator's hinge loss, seen through a stop_gradient copy of the
discriminator's parameters, plus the discriminator's hinge loss on the real images and on
stop_gradient reconstructions. So the discriminator's gradient comes from its own loss alone
and the encoder's and decoder's from theirs alone.
"""

from typing import Any, Callable, Mapping, Optional

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from model_zoo import feature_converters
from model_zoo.errors import ConfigError
from model_zoo.layers import types
from model_zoo.metrics import Average
from model_zoo.spae import losses, quantizer
from model_zoo.spae.config import SpaeConfig
from model_zoo.spae.networks import Codebook, Decoder, Discriminator, Encoder

Batch = Mapping[str, jax.Array]
Params = Any


@gin.configurable
class SpaeAutoencoder(nn.Module):
  """Encoder, decoder, the frozen codebook and, with a GAN term, the discriminator
  (model_zoo/spae/networks.py)."""

  config: SpaeConfig

  def setup(self):
    self.encoder = Encoder(self.config)
    self.decoder = Decoder(self.config)
    self.codebook = Codebook(self.config)
    if self.config.adversarial_weight:
      self.discriminator = Discriminator(self.config)

  def __call__(self, image: types.Array) -> types.Array:
    """Every parameter's shape: encode, read the codes, decode (and discriminate)."""
    self.codes()
    output = self.decode(self.encode(image))
    if self.config.adversarial_weight:
      self.discriminate(output)
    return output

  def discriminate(self, image: types.Array) -> types.Array:
    return self.discriminator(image)

  def encode(self, image: types.Array) -> types.Array:
    return self.encoder(image)

  def decode(self, latent: types.Array) -> types.Array:
    return self.decoder(latent)

  def codes(self) -> types.Array:
    return self.codebook()


@gin.configurable
class SpaeModel:
  """A Semantic Pyramid AutoEncoder over a frozen LM's vocabulary (see the module docstring)."""

  FEATURE_CONVERTER_CLS = feature_converters.SpaeFeatureConverter
  THROUGHPUT_UNIT = "images"  # what num_target_tokens counts (the train CLI's rate)

  def __init__(self, module: SpaeAutoencoder):
    self.module = module
    self.config: SpaeConfig = module.config
    self.pyramid = self.config.pyramid

  @property
  def vocab_size(self) -> int:
    """The frozen LM's vocabulary, which the task's word tokens must fit."""
    return self.config.vocab_size

  def _image(self, batch: Batch) -> jax.Array:
    """The batch's images as float32, checked against the pyramid (shapes are static)."""
    image = batch["image"]
    cfg = self.config
    side = image.shape[1]
    if image.ndim != 4 or image.shape[3] != cfg.image_channels or image.shape[2] != side:
      raise ConfigError(
          f"SPAE reads square images [batch, side, side, {cfg.image_channels}] "
          f"(SpaeConfig.image_channels); got a batch of shape {tuple(image.shape)}."
      )
    if side != cfg.image_side:
      raise ConfigError(
          f"Images of side {side} do not fit the pyramid: the encoder's "
          f"{len(cfg.channel_multipliers) - 1} stride-2 stages (SpaeConfig.channel_multipliers="
          f"{cfg.channel_multipliers}) map side x side pixels onto a latent grid of side / "
          f"{cfg.downsampling}, which must be the last pyramid layer's side {self.pyramid.grid} "
          f"(SpaeConfig.layer_tokens={cfg.layer_tokens}): images must be {cfg.image_side} "
          f"pixels a side. Change TASK_FEATURE_LENGTHS['image'] or the SpaeConfig."
      )
    return image.astype(jnp.float32)

  # --- the API ---------------------------------------------------------------------------
  def init(self, rng: jax.Array, batch: Batch) -> Params:
    return self.module.init({"params": rng}, self._image(batch))["params"]

  def loss_normalizer(self, batch: Batch) -> jax.Array:
    """Images that count: the per-image loss is averaged over them."""
    return jnp.sum(feature_converters.example_weights(batch))

  def num_target_tokens(self, batch: Batch) -> jax.Array:
    """Images per step: the train CLI prints images/s (THROUGHPUT_UNIT)."""
    return self.loss_normalizer(batch)

  def loss_fn(
      self,
      params: Params,
      batch: Batch,
      rng: Optional[jax.Array] = None,
      normalizer: Optional[jax.Array] = None,
  ) -> tuple[jax.Array, dict[str, Average]]:
    """Weighted mean per-image loss and its terms as metrics (no randomness: `rng` unused)."""
    del rng
    terms = self.example_terms(params, batch)
    weights = jnp.asarray(feature_converters.example_weights(batch), jnp.float32)
    weight_sum = jnp.sum(weights)
    normalizer = weight_sum if normalizer is None else normalizer
    loss_sum = jnp.sum(terms.pop("loss") * weights)
    metrics = {"loss": Average.of(loss_sum, weight_sum)}
    has_words = weights * terms.pop("has_words")
    for name, value in terms.items():
      counted = has_words if name.startswith("semantic") else weights
      metrics[name] = Average.of(jnp.sum(value * counted), jnp.sum(counted))
    return loss_sum / normalizer, metrics

  def example_terms(self, params: Params, batch: Batch) -> dict[str, jax.Array]:
    """Every loss term per image [batch], by metric name, and "loss" their weighted sum."""
    cfg = self.config
    image = self._image(batch)
    z, codes, saq = self._quantize(params, image)
    depths = self.pyramid.num_layers
    # Straight through: each depth's decoder input has the SAQ value and z's gradient.
    latents = jnp.concatenate([z + jax.lax.stop_gradient(m - z) for m in saq.means])
    outputs = self.module.apply({"params": params}, latents, method="decode")
    targets = jnp.concatenate([image] * depths)  # depth-major, as `latents`
    l2 = losses.squared_error(outputs, targets).reshape(depths, -1)
    structural = losses.structural_loss(outputs, targets, cfg.structural_scales)
    structural = structural.reshape(depths, -1)
    terms = {}
    for depth in range(depths):
      terms[f"reconstruction/l2_depth_{depth + 1}"] = l2[depth]
      terms[f"reconstruction/structural_depth_{depth + 1}"] = structural[depth]
    loss = jnp.mean(l2 + cfg.structural_weight * structural, axis=0)
    commitment = sum(_mean_square(z - jax.lax.stop_gradient(m)) for m in saq.means) / depths
    codebook = sum(_mean_square(jax.lax.stop_gradient(z) - m) for m in saq.means) / depths
    terms["commitment"], terms["codebook"] = commitment, codebook
    loss = loss + cfg.commitment_weight * commitment + cfg.codebook_weight * codebook
    relevant = losses.relevance(
        batch.get("semantic_tokens", jnp.zeros(image.shape[:1] + (1,), jnp.int32)),
        cfg.first_code_id,
        cfg.num_codes,
    )
    terms["has_words"] = (jnp.sum(relevant, -1) > 0).astype(jnp.float32)
    if cfg.semantic_layers:
      residuals = jnp.concatenate(
          [t.reshape(t.shape[0], -1, t.shape[-1]) for t in saq.targets[: cfg.semantic_layers]],
          axis=1,
      )
      semantic = losses.semantic_loss(
          residuals, codes, relevant, cfg.semantic_temperature, cfg.semantic_any
      )
      terms["semantic"] = semantic
      loss = loss + cfg.semantic_weight * semantic
    if cfg.adversarial_weight:
      generator, discriminator = self._adversarial_terms(params, outputs, image, depths)
      terms["adversarial/generator"], terms["adversarial/discriminator"] = generator, discriminator
      loss = loss + cfg.adversarial_weight * generator + discriminator
    top = saq.tokens[0].reshape(image.shape[0], -1)  # the first layer's tokens
    terms["semantic_hit"] = jnp.mean(jnp.take_along_axis(relevant, top, axis=1), axis=1)
    terms["loss"] = loss
    return terms

  def _adversarial_terms(
      self, params: Params, outputs: jax.Array, image: jax.Array, depths: int
  ) -> tuple[jax.Array, jax.Array]:
    """Per image [batch], averaged over the depths' reconstructions `outputs` (depth-major):
    the generator's hinge loss (the discriminator held fixed) and the discriminator's (the
    reconstructions held fixed)."""

    def logits(discriminator_params, images):
      variables = {"params": {**params, "discriminator": discriminator_params}}
      return self.module.apply(variables, images, method="discriminate")

    own = params["discriminator"]
    fake = logits(jax.lax.stop_gradient(own), outputs)
    generator = losses.generator_hinge_loss(fake).reshape(depths, image.shape[0])
    real = logits(own, image)
    fake = logits(own, jax.lax.stop_gradient(outputs)).reshape((depths,) + real.shape)
    discriminator = jnp.stack([losses.discriminator_hinge_loss(real, f) for f in fake])
    return jnp.mean(generator, axis=0), jnp.mean(discriminator, axis=0)

  def score_batch(self, params: Params, batch: Batch, return_per_token: bool = False):
    """Per image: minus the mean squared error of its full-depth reconstruction."""
    if return_per_token:
      raise ConfigError("SPAE scores whole images; return_per_token does not apply.")
    image = self._image(batch)
    return -losses.squared_error(self.reconstruct(params, image)[-1], image)

  def predict_batch(
      self,
      params: Params,
      batch: Batch,
      rng: Optional[jax.Array] = None,
      decoder: Optional[Callable] = None,
      return_all_decodes: bool = False,
  ) -> tuple[jax.Array, jax.Array]:
    """Each image's SPAE tokens (LM ids, pyramid order) and its full-depth score_batch."""
    del rng
    if decoder is not None or return_all_decodes:
      raise ConfigError(
          "SPAE encodes images deterministically: no decoder or sampled decodes apply."
      )
    return self.encode(params, self._image(batch)), self.score_batch(params, batch)

  # --- images <-> LM ids ------------------------------------------------------------------
  def encode(self, params: Params, image: types.Array) -> jax.Array:
    """[batch, num_tokens] LM ids: layer 1's tokens, then layer 2's, ... (row-major each)."""
    saq = self._quantize(params, image)[2]
    flat = [t.reshape(t.shape[0], -1) for t in saq.tokens]
    return jnp.concatenate(flat, axis=1).astype(jnp.int32) + self.config.first_code_id

  def decode(self, params: Params, ids: types.Array) -> jax.Array:
    """Images [batch, side, side, channels] from LM ids [batch, n]: n must be the token count
    of the pyramid's first few layers (e.g. 1, 5, 21 or 85 for (1, 4, 16, 64)); fewer
    layers give a coarser image. An id outside the codebook is an error."""
    layers = self.layers_of(ids)
    codes = self.module.apply({"params": params}, method="codes")
    latent = quantizer.dequantize(layers, codes, self.pyramid)
    return self.module.apply({"params": params}, latent, method="decode")

  def layers_of(self, ids: types.Array) -> list[jax.Array]:
    """LM ids [batch, n] split into the pyramid's layers as code indices [batch, g, g]."""
    offsets = self.pyramid.offsets() + [self.pyramid.num_tokens]
    if ids.shape[1] not in offsets[1:]:
      raise ConfigError(
          f"{ids.shape[1]} SPAE tokens are not a whole number of pyramid layers: expected one "
          f"of {offsets[1:]} (SpaeConfig.layer_tokens={self.config.layer_tokens})."
      )
    cfg = self.config
    if not isinstance(ids, jax.core.Tracer):
      values = np.asarray(ids)
      outside = values[(values < cfg.first_code_id) | (values >= cfg.code_stop)]
      if outside.size:
        raise ConfigError(
            f"SPAE tokens must be LM ids in the codebook [{cfg.first_code_id}, "
            f"{cfg.code_stop}) (SpaeConfig.first_code_id / last_code_id); got "
            f"{sorted(set(outside.tolist()))[:5]}."
        )
    codes = ids - cfg.first_code_id
    layers = []
    for layer, (start, stop) in enumerate(zip(offsets, offsets[1:])):
      if stop > ids.shape[1]:
        break
      side = self.pyramid.side(layer)
      layers.append(codes[:, start:stop].reshape(ids.shape[0], side, side))
    return layers

  def _quantize(self, params: Params, image: types.Array):
    """(the encoder's latents z, the codes, SAQ of z)."""
    z = self.module.apply({"params": params}, image, method="encode").astype(jnp.float32)
    codes = self.module.apply({"params": params}, method="codes")
    return z, codes, quantizer.streaming_average_quantize(z, codes, self.pyramid)

  def reconstruct(self, params: Params, image: types.Array) -> jax.Array:
    """[depths, batch, side, side, channels]: the image decoded from each pyramid prefix."""
    saq = self._quantize(params, image)[2]
    outputs = self.module.apply({"params": params}, jnp.concatenate(saq.means), method="decode")
    return outputs.reshape((len(saq.means),) + image.shape)


def _mean_square(x: jax.Array) -> jax.Array:
  """Per example [batch] of x [batch, ...]."""
  return jnp.mean(jnp.square(x), axis=tuple(range(1, x.ndim)))
