"""Hyper-parameters of the mixture-of-experts layers, one gin-configurable record."""

import dataclasses
from typing import Optional

import gin

from model_zoo.errors import ConfigError
from model_zoo.moe import routers

ROUTERS = ("top_k", "expert_choice")
DISPATCHES = ("einsum", "dropless")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class MoeConfig:
  """Mixture-of-experts FFNs in a transformer (model_zoo/moe/layer.py): every
  `moe_layer_interval`-th layer's MLP becomes a MoeBlock (GLaM: every other layer)."""

  num_experts: int = 8
  top_k: int = 2
  mlp_dim: Optional[int] = None  # each expert's width; None: TransformerConfig.mlp_dim
  moe_layer_interval: int = 2
  group_size: int = 1024  # tokens routed together, within one sequence (at most its length)
  train_capacity_factor: float = 2.0
  eval_capacity_factor: float = 2.0
  router: str = "top_k"  # top_k | expert_choice
  dispatch: str = "einsum"  # einsum | dropless
  second_expert_policy: str = "all"  # all | random
  jitter: float = 0.0
  balance_loss_weight: float = 0.01
  z_loss_weight: float = 1e-3
  # Also report each expert's share of each layer's routed tokens (metrics/.../expert_load/
  # <block>/<expert>: E x L scalars a step); off, the layers report its max, mean over layers.
  report_expert_load: bool = False

  @property
  def activated_expert_fraction(self) -> float:
    """The share of a MoE layer's expert weights one token goes through on average: top_k of
    num_experts; with expert choice, train_capacity_factor of them (each expert takes
    capacity_factor / E of the tokens)."""
    per_token = self.top_k if self.router == "top_k" else self.train_capacity_factor
    return per_token / self.num_experts

  def __post_init__(self):
    for name in ("num_experts", "moe_layer_interval", "group_size"):
      if getattr(self, name) < 1:
        raise ConfigError(f"MoeConfig.{name}={getattr(self, name)} must be >= 1.")
    if not 1 <= self.top_k <= self.num_experts:
      raise ConfigError(
          f"MoeConfig.top_k={self.top_k} must be between 1 and num_experts={self.num_experts}."
      )
    for name in ("train_capacity_factor", "eval_capacity_factor"):
      if not getattr(self, name) > 0:
        raise ConfigError(f"MoeConfig.{name}={getattr(self, name)} must be > 0 (GLaM uses 2.0).")
    for name, allowed in (
        ("router", ROUTERS),
        ("dispatch", DISPATCHES),
        ("second_expert_policy", routers.SECOND_EXPERT_POLICIES),
    ):
      if getattr(self, name) not in allowed:
        raise ConfigError(
            f"MoeConfig.{name}={getattr(self, name)!r}; expected one of {list(allowed)}."
        )
    if self.dispatch == "dropless" and self.router != "top_k":
      raise ConfigError(
          "MoeConfig.dispatch='dropless' needs router 'top_k' (expert choice never drops); "
          "use dispatch 'einsum'."
      )
