"""Hyper-parameters of the dense transformers, one gin-configurable record."""

import dataclasses
from typing import Any, Optional, Sequence

import gin
import jax
import jax.numpy as jnp

from model_zoo.errors import ConfigError
from model_zoo import layer_spec
from model_zoo.layers import linear
from model_zoo.moe.config import MoeConfig

_policies = jax.checkpoint_policies
# DenseGeneral's matmul has its own VJP, which hides it from the matmul policies: named instead.
_weight_matmuls = _policies.save_only_these_names(linear.WEIGHT_MATMUL)
REMAT_POLICIES = {
    "none": None,  # no rematerialisation
    "full": _policies.nothing_saveable,  # recompute everything in the backward pass
    # keep every matmul's output
    "dots": _policies.save_from_both_policies(_policies.checkpoint_dots, _weight_matmuls),
    # keep the outputs of matmuls without batch dimensions (the weights'), not attention's
    "dots_no_batch": _policies.save_from_both_policies(
        _policies.dots_with_no_batch_dims_saveable, _weight_matmuls
    ),
}
# see layers.attention.dot_product_attention and segment_attention
ATTENTION_IMPLS = ("einsum", "xla", "cudnn", "pallas")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Sizes and numerics of a dense transformer (decoder-only or encoder-decoder)."""

  vocab_size: int = 32128
  emb_dim: int = 512
  num_heads: int = 8
  num_kv_heads: int = 8  # 1: multi-query; < num_heads: grouped-query
  head_dim: int = 64
  mlp_dim: int = 2048
  num_layers: int = 8  # decoder layers; with a `block`, decoder blocks
  num_encoder_layers: int = 8  # encoder-decoder models only
  activations: Sequence[str] = ("silu", "linear")  # SwiGLU; ("gelu", "linear") is GeGLU
  dropout_rate: float = 0.0
  dtype: str = "bfloat16"  # activations
  param_dtype: str = "float32"
  tie_embeddings: bool = True
  scan_layers: bool = True
  remat_policy: str = "none"  # one of REMAT_POLICIES
  position_encoding: str = "rope"  # rope | relative_bias (T5's bucketed relative biases)
  rope_max_wavelength: float = 10_000.0
  relpos_num_buckets: int = 32
  relpos_max_distance: int = 128
  attention_impl: str = "einsum"  # einsum | xla | cudnn | pallas
  moe: Optional[MoeConfig] = None  # mixture-of-experts FFNs in some layers
  # A block of sub-layers (model_zoo/layer_spec.py, e.g. Brainformer's), stacked num_layers
  # times in place of the uniform [attention, FFN] layers; decoder-only models.
  block: Optional[Sequence[Any]] = None

  def __post_init__(self):
    for name in ("vocab_size", "emb_dim", "num_heads", "num_kv_heads", "head_dim", "mlp_dim"):
      if getattr(self, name) < 1:
        raise ConfigError(f"TransformerConfig.{name}={getattr(self, name)} must be >= 1.")
    for name in ("dtype", "param_dtype"):
      try:
        jnp.dtype(getattr(self, name))
      except TypeError as e:
        raise ConfigError(
            f"TransformerConfig.{name}={getattr(self, name)!r} is not a dtype; use e.g. "
            "'float32' or 'bfloat16'."
        ) from e
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ConfigError(
          f"TransformerConfig.attention_impl={self.attention_impl!r}; expected one of "
          f"{list(ATTENTION_IMPLS)}."
      )
    if self.remat_policy not in REMAT_POLICIES:
      raise ConfigError(
          f"TransformerConfig.remat_policy={self.remat_policy!r}; "
          f"expected one of {sorted(REMAT_POLICIES)}."
      )
    if self.position_encoding not in ("rope", "relative_bias"):
      raise ConfigError(
          f"TransformerConfig.position_encoding={self.position_encoding!r}; expected "
          "'rope' or 'relative_bias'."
      )
    if self.attention_impl == "pallas" and self.position_encoding != "rope":
      raise ConfigError(
          f"TransformerConfig.attention_impl='pallas' has no bias input for position_encoding="
          f"{self.position_encoding!r}; use attention_impl 'cudnn' or 'einsum'."
      )
    if self.num_heads % self.num_kv_heads:
      raise ConfigError(
          f"TransformerConfig.num_heads={self.num_heads} must be a multiple of "
          f"TransformerConfig.num_kv_heads={self.num_kv_heads}."
      )
    if self.head_dim % 2:
      raise ConfigError(f"TransformerConfig.head_dim={self.head_dim} must be even for RoPE.")
    if self.block is not None:  # kept as hashable LayerSpecs, checked against `moe` now
      object.__setattr__(self, "block", layer_spec.parse_block(self.block))
      layer_spec.moe_configs(self.block, self.moe)

  @property
  def num_attention_layers(self) -> int:
    """Self-attention layers in the decoder (num_layers, or per block times blocks)."""
    if self.block is None:
      return self.num_layers
    return self.num_layers * sum(spec.kind == layer_spec.ATTENTION for spec in self.block)

  @property
  def activation_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def parameter_dtype(self):
    return jnp.dtype(self.param_dtype)
