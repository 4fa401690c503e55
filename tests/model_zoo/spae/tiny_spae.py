"""A SPAE small enough to compile in seconds, for the model and trainer tests."""

import numpy as np

from model_zoo.spae.config import SpaeConfig
from model_zoo.spae.model import SpaeAutoencoder, SpaeModel


def tiny_spae(**overrides) -> SpaeModel:
  """16x16 images, a (1, 4, 16) pyramid over a 4x4 latent, a 40-word 'LM' of width 8; only
  the stride-2 and in/out convolutions (each random initialiser costs XLA ~0.2 s to compile
  on a CPU)."""
  settings = dict(
      vocab_size=40,
      lm_embed_dim=8,
      latent_dim=8,
      channels=8,
      channel_multipliers=(1, 1, 2),
      num_res_blocks=0,
      num_attention_blocks=0,
      layer_tokens=(1, 4, 16),
  )
  return SpaeModel(SpaeAutoencoder(SpaeConfig(**{**settings, **overrides})))


def image_batch(rows: int = 4, side: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
  """Smooth random images (blocks of colour) with 1-2 word pieces each (ids 3..39)."""
  rng = np.random.default_rng(seed)
  coarse = rng.random((rows, side // 4, side // 4, 3))
  image = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2).astype(np.float32)
  words = rng.integers(3, 40, size=(rows, 2)).astype(np.int32)
  words[::2, 1] = 0
  return {"image": image, "semantic_tokens": words}
