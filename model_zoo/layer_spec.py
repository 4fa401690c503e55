"""Layer specs: a transformer block written as a list of sub-layers (Brainformer).

A block is a gin list whose items are a kind name or a dict with a "kind" and that
sub-layer's own settings, e.g.

    TransformerConfig.block = [
        "attention",
        {"kind": "moe", "router": "expert_choice", "capacity_factor": 1.0, "mlp_dim": 512},
        {"kind": "ffn", "mlp_dim": 1024},
    ]

Every sub-layer is a residual branch, x + f(norm(x)), with a norm of its own. A setting left
out takes the model's: TransformerConfig.mlp_dim for an FFN's width, TransformerConfig.moe
(MoeConfig) for a MoE sub-layer's router, top_k, capacity factor and expert width. The specs
are plain data, so a block search can write them to JSONL and bind them back in gin.
"""

import dataclasses
from typing import Any, Mapping, Optional, Sequence, Union

from model_zoo.errors import ConfigError
from model_zoo.moe.config import MoeConfig

ATTENTION, FFN, MOE = KINDS = ("attention", "ffn", "moe")
NORMS = ("rms", "none")  # pre-RMSNorm, or the branch reads x itself
_MOE_SETTINGS = ("router", "top_k", "capacity_factor")


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One sub-layer of a block; None settings take the model's (see the module docstring)."""

  kind: str
  mlp_dim: Optional[int] = None  # "ffn" and "moe": the (each expert's) hidden width
  router: Optional[str] = None  # "moe": top_k | expert_choice
  top_k: Optional[int] = None  # "moe" with router top_k
  capacity_factor: Optional[float] = None  # "moe": train and eval capacity factor
  norm: str = "rms"

  def moe_config(self, model_moe: MoeConfig) -> MoeConfig:
    """The MoeConfig of a "moe" sub-layer: the model's with this spec's settings."""
    changes = {"router": self.router, "top_k": self.top_k, "mlp_dim": self.mlp_dim}
    if self.capacity_factor is not None:
      changes["train_capacity_factor"] = changes["eval_capacity_factor"] = self.capacity_factor
    return dataclasses.replace(model_moe, **{k: v for k, v in changes.items() if v is not None})

  def as_dict(self) -> dict[str, Any]:
    """The spec with only its set fields: what gin and JSONL logs hold."""
    fields = dataclasses.asdict(self)
    defaults = {f.name: f.default for f in dataclasses.fields(self)}
    return {k: v for k, v in fields.items() if k == "kind" or v != defaults[k]}


def parse_block(
    block: Sequence[Union[str, Mapping[str, Any]]], setting: str = "TransformerConfig.block"
) -> tuple[LayerSpec, ...]:
  """The specs of a gin block list; a ConfigError names the item and `setting` if one is bad."""
  if isinstance(block, (str, Mapping)) or not block:
    raise ConfigError(
        f"{setting} must be a non-empty list of sub-layers (kind names or dicts); got {block!r}."
    )
  return tuple(_parse_item(item, f"{setting}[{i}]") for i, item in enumerate(block))


def _parse_item(item: Union[str, Mapping[str, Any], LayerSpec], where: str) -> LayerSpec:
  if isinstance(item, LayerSpec):
    item = item.as_dict()
  fields = {"kind": item} if isinstance(item, str) else dict(item)
  kind = fields.get("kind")
  if kind not in KINDS:
    raise ConfigError(f"{where}: unknown layer kind {kind!r}; expected one of {list(KINDS)}.")
  allowed = {f.name for f in dataclasses.fields(LayerSpec)}
  if kind == ATTENTION:
    allowed -= {"mlp_dim", *_MOE_SETTINGS}
  elif kind == FFN:
    allowed -= set(_MOE_SETTINGS)
  unknown = sorted(set(fields) - allowed)
  if unknown:
    raise ConfigError(
        f"{where}: a {kind!r} sub-layer has no setting {unknown}; it takes {sorted(allowed)}."
    )
  spec = LayerSpec(**fields)
  if spec.norm not in NORMS:
    raise ConfigError(f"{where}: norm={spec.norm!r}; expected one of {list(NORMS)}.")
  if spec.mlp_dim is not None and spec.mlp_dim < 1:
    raise ConfigError(f"{where}: mlp_dim={spec.mlp_dim} must be >= 1.")
  return spec


def moe_configs(specs: Sequence[LayerSpec], model_moe: Optional[MoeConfig]) -> dict[int, MoeConfig]:
  """Each "moe" sub-layer's MoeConfig by its index; a ConfigError names a bad one."""
  configs = {}
  for i, spec in enumerate(specs):
    if spec.kind != MOE:
      continue
    if model_moe is None:
      raise ConfigError(
          f"TransformerConfig.block[{i}] is a 'moe' sub-layer but TransformerConfig.moe is None; "
          "bind TransformerConfig.moe = @MoeConfig() (its experts, group size and losses)."
      )
    try:
      configs[i] = spec.moe_config(model_moe)
    except ConfigError as e:
      raise ConfigError(f"TransformerConfig.block[{i}]: {e}") from e
  return configs
