"""The pieces of a transformer layer built from a TransformerConfig: attention, norms, dropout,
the dense MLP and the MoeBlock. TransformerLayer (dense.py) and the spec-built blocks
(brainformer.py) are made of them, so both name and size their parameters alike."""

import flax.linen as nn

from model_zoo.config import TransformerConfig
from model_zoo.layers import attention, mlp, norms, types
from model_zoo.moe import layer as moe_layer
from model_zoo.moe.config import MoeConfig

_ACTIVATION_AXES = ("activation_batch", "activation_length", "activation_embed")


def constrain(x: types.Array) -> types.Array:
  """The residual stream's sharding at a layer's boundaries."""
  return nn.with_logical_constraint(x, _ACTIVATION_AXES)


class TransformerSublayers(nn.Module):
  """A base of modules that build their sub-layers from `config`."""

  config: TransformerConfig
  causal_cache: bool = False  # decode with a KV cache
  deterministic: bool = True

  def _attention(self, name: str, use_rope: bool = True) -> attention.Attention:
    cfg = self.config
    return attention.Attention(
        use_rope=use_rope,
        num_heads=cfg.num_heads,
        num_kv_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
        dtype=cfg.activation_dtype,
        param_dtype=cfg.parameter_dtype,
        rope_max_wavelength=cfg.rope_max_wavelength,
        dropout_rate=cfg.dropout_rate,
        implementation=cfg.attention_impl,
        name=name,
    )

  def _self_attention(
      self, name: str, h: types.Array, mask, positions, bias=None, segments=None
  ) -> types.Array:
    return self._attention(name, use_rope=self.config.position_encoding == "rope")(
        h,
        h,
        mask,
        q_positions=positions,
        kv_positions=positions,
        bias=bias,
        segments=segments,
        decode=self.causal_cache,
        deterministic=self.deterministic,
    )

  def _norm(self, name: str) -> norms.RMSNorm:
    return norms.RMSNorm(
        dtype=self.config.activation_dtype, param_dtype=self.config.parameter_dtype, name=name
    )

  def _dropout(self, x: types.Array) -> types.Array:
    return nn.Dropout(self.config.dropout_rate, broadcast_dims=(-2,))(
        x, deterministic=self.deterministic
    )

  def _numerics(self) -> dict:
    return dict(dtype=self.config.activation_dtype, param_dtype=self.config.parameter_dtype)

  def _mlp(self, width: int) -> mlp.MlpBlock:
    cfg = self.config
    return mlp.MlpBlock(width, cfg.activations, cfg.dropout_rate, **self._numerics(), name="mlp")

  def _moe(self, moe: MoeConfig) -> moe_layer.MoeBlock:
    cfg = self.config
    return moe_layer.MoeBlock(
        moe,
        moe.mlp_dim or cfg.mlp_dim,
        cfg.activations,
        cfg.dropout_rate,
        **self._numerics(),
        name=moe_layer.MODULE_NAME,
    )
