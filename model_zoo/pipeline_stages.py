"""A decoder-only LM cut into pipeline stages: contiguous runs of its layers, so that each
stage can run on devices of its own (inter-op parallelism, as AlpaServe places models).

Stage k of S holds the layer units `stage_ranges(...)[k]` (a unit is a layer, or a MoE or
Brainformer block); the first stage also embeds the tokens, the last also applies the final
norm and the logits head (and holds the embedding too when the head is tied to it). Applied
one after another to the same batch, the stages give the whole model's logits, and
`stage_params` cuts a DecoderOnlyLM's parameters into theirs.
"""

import itertools
from typing import Any, Optional

import flax.linen as nn
import jax

from model_zoo import dense
from model_zoo.config import TransformerConfig
from model_zoo.errors import ConfigError
from model_zoo.layers import types

Params = dict[str, Any]


def layer_units(cfg: TransformerConfig) -> int:
  """How many units the layer stack repeats: layers, or MoE blocks of moe_layer_interval."""
  if cfg.moe is not None and cfg.block is None:
    return cfg.num_layers // cfg.moe.moe_layer_interval
  return cfg.num_layers


def stage_ranges(cfg: TransformerConfig, stages: int) -> list[tuple[int, int]]:
  """[start, end) units of each stage: as even as can be, the first stages one unit longer."""
  units = layer_units(cfg)
  if not 1 <= stages <= units:
    raise ConfigError(
        f"{stages} pipeline stages for a model of {units} layer units: a stage needs at least "
        "one; use between 1 and that many stages."
    )
  base, extra = divmod(units, stages)
  bounds = list(itertools.accumulate((base + (k < extra) for k in range(stages)), initial=0))
  return list(zip(bounds, bounds[1:]))


def _layers_per_unit(cfg: TransformerConfig) -> int:
  return cfg.num_layers // layer_units(cfg)


class DecoderStage(nn.Module):
  """One stage: `num_units` of the layer stack, with the embedding first and the head last."""

  config: TransformerConfig
  num_units: int
  first: bool
  last: bool

  @nn.compact
  def __call__(
      self,
      x: types.Array,
      target_tokens: types.Array,
      positions: Optional[types.Array] = None,
      segment_ids: Optional[types.Array] = None,
      *,
      decode: bool = False,
      max_decode_length: Optional[int] = None,
  ) -> types.Array:
    """`x` is the token ids for the first stage, the previous stage's output otherwise;
    `target_tokens` (and `segment_ids`) give the attention mask as in DecoderOnlyLM. With
    `decode`, the stage's layers read and write their "cache" collection as DecoderOnlyLM's
    do (a causal cache needs no targets: `target_tokens` may be None)."""
    cfg = self.config
    embed = None
    if self.first or (self.last and cfg.tie_embeddings):
      embed = dense._embed(cfg, "token_embedder")  # pylint: disable=protected-access
    if self.first:
      x = embed(x)
    mask, segments = dense.decoder_self_attention(cfg, x, target_tokens, segment_ids, decode=decode)
    x = dense.LayerStack(cfg, self.num_units * _layers_per_unit(cfg), name="decoder")(
        x,
        mask,
        positions,
        segments=segments,
        decode=decode,
        max_decode_length=max_decode_length,
    )
    if self.last:
      x = dense._LogitsHead(cfg, name="head")(x, embed)  # pylint: disable=protected-access
    return x


def stages(cfg: TransformerConfig, num_stages: int) -> list[DecoderStage]:
  ranges = stage_ranges(cfg, num_stages)
  return [
      DecoderStage(cfg, end - start, first=k == 0, last=k == num_stages - 1)
      for k, (start, end) in enumerate(ranges)
  ]


def stage_params(cfg: TransformerConfig, params: Params, num_stages: int, k: int) -> Params:
  """Stage k's parameters, cut from a DecoderOnlyLM's (`params` as Model.init gives them)."""
  start, end = stage_ranges(cfg, num_stages)[k]
  decoder = params["decoder"]
  shared = {name: value for name, value in decoder.items() if not name.startswith("layers")}
  if cfg.scan_layers:
    layers = {"layers": jax.tree.map(lambda a: a[start:end], decoder["layers"])}
  else:
    layers = {f"layers_{i - start}": decoder[f"layers_{i}"] for i in range(start, end)}
  cut = {"decoder": {**shared, **layers}}
  if k == 0 or (k == num_stages - 1 and cfg.tie_embeddings):
    cut["token_embedder"] = params["token_embedder"]
  if k == num_stages - 1:
    cut["head"] = params["head"]
  return cut
