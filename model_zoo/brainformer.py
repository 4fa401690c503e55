"""Brainformer (Zhou et al. 2023): a transformer stacked from one non-uniform block of
attention, dense-FFN and MoE sub-layers, each with its own width, router and capacity.

`SpecBlock` builds TransformerConfig.block (model_zoo/layer_spec.py) in order; LayerStack
(dense.py) scans it num_layers times like any other block, so decoding with a KV cache,
remat, sharding and checkpoints are the dense model's. `brainformer_1_block` is the shipped
recipe (gin/models/brainformer.gin).
"""

from typing import Optional

import flax.linen as nn
import gin

from model_zoo import layer_spec, sublayers
from model_zoo.layer_spec import LayerSpec
from model_zoo.moe.config import MoeConfig

SUBLAYER_PREFIX = "sublayer_"  # a block's i-th sub-layer is module f"sublayer_{i}"


@gin.configurable
def brainformer_1_block(
    moe_mlp_dim: Optional[int] = None,
    ffn_mlp_dim: Optional[int] = None,
    router: str = "expert_choice",
    top_k: Optional[int] = None,
    capacity_factor: float = 1.0,
) -> list[dict]:
  """Brainformer-1's block as this project reads it: 8 sub-layers, 2 attention, 3 expert-choice
  MoE with capacity factor 1 and 3 dense FFNs, in the order

      attention, moe, ffn, moe, attention, ffn, moe, ffn.

  The paper gives the order only in a figure, which was not at hand offline when this was
  written; its text says the block has 8 sub-layers, routes by expert choice at capacity
  factor 1, spends fewer sub-layers on attention than a uniform transformer does, and that
  the ratio of layer types matters more than their order (swapping two layers changes
  little). So this reading keeps that ratio and spreads each kind as evenly as 8 places allow:
  every attention sub-layer is followed by a MoE, no two sub-layers of a kind touch, and the
  two halves of the block differ only where 3 does not split in two. Change the list in gin
  (TransformerConfig.block) to try another order. Widths of None take the model's
  (MoeConfig.mlp_dim, TransformerConfig.mlp_dim); `router`, `top_k` and `capacity_factor`
  set every MoE sub-layer's (top-1 at capacity factor 2 routes causally, see SpecBlock).
  """
  moe = {"kind": layer_spec.MOE, "router": router, "capacity_factor": capacity_factor}
  optional = {"mlp_dim": moe_mlp_dim, "top_k": top_k}
  moe.update({k: v for k, v in optional.items() if v is not None})
  ffn = {"kind": layer_spec.FFN}
  if ffn_mlp_dim is not None:
    ffn["mlp_dim"] = ffn_mlp_dim
  attention = {"kind": layer_spec.ATTENTION}
  return [attention, moe, ffn, moe, attention, ffn, moe, ffn]


class SpecSublayer(sublayers.TransformerSublayers):
  """One sub-layer of a block: x + dropout(f(norm(x))), f the spec's attention, FFN or MoE."""

  spec: Optional[LayerSpec] = None
  moe: Optional[MoeConfig] = None  # a "moe" sub-layer's settings (layer_spec.moe_configs)

  @nn.compact
  def __call__(self, x, mask, positions, bias=None, segments=None):
    h = self._norm("norm")(x) if self.spec.norm == "rms" else x
    if self.spec.kind == layer_spec.ATTENTION:
      h = self._self_attention("attention", h, mask, positions, bias, segments)
    elif self.spec.kind == layer_spec.FFN:
      h = self._mlp(self.spec.mlp_dim or self.config.mlp_dim)(h, self.deterministic)
    else:
      h = self._moe(self.moe)(h, self.deterministic)
    return sublayers.constrain(x + self._dropout(h))


class SpecBlock(sublayers.TransformerSublayers):
  """TransformerConfig.block's sub-layers in order: the unit LayerStack scans.

  Expert choice ranks the tokens of a routing group (a sequence, or MoeConfig.group_size of
  it) for each expert, so a token's experts depend on the tokens after it: training and
  scoring see the whole group, one-token decoding steps route each token alone (every
  expert takes it). Token-choice routing (top-k) is causal; use it where that matters.
  """

  @nn.compact
  def __call__(self, x, mask, positions, encoded=None, cross_mask=None, bias=None, segments=None):
    del encoded, cross_mask  # decoder-only (EncoderDecoder refuses a block)
    moe_configs = layer_spec.moe_configs(self.config.block, self.config.moe)
    x = sublayers.constrain(x)
    for i, spec in enumerate(self.config.block):
      x = SpecSublayer(
          self.config,
          self.causal_cache,
          self.deterministic,
          spec=spec,
          moe=moe_configs.get(i),
          name=f"{SUBLAYER_PREFIX}{i}",
      )(x, mask, positions, bias, segments)
    return x, None  # (carry, per-block output) as nn.scan expects
