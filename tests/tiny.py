"""The one tiny fp32 TransformerConfig the tests share; each test overrides only what it varies."""

import dataclasses

from model_zoo.config import TransformerConfig

_TINY = TransformerConfig(
    vocab_size=64,
    emb_dim=32,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    mlp_dim=64,
    num_layers=2,
    num_encoder_layers=2,
    dtype="float32",
)


def tiny_config(**overrides) -> TransformerConfig:
  """A 2-layer, 32-wide fp32 config (grouped-query heads 4 over 2), with `overrides`."""
  return dataclasses.replace(_TINY, **overrides)
