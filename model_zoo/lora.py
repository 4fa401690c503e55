"""A Model with LoRA adapters (model_zoo/layers/lora.py) on the kernels a LoraConfig picks.

`lora_model(model, config)` is `model` with its Flax module behind a stand-in whose `init`
adds the adapters beside the kernels and whose `apply` merges them into the kernels first, so
the Model API (loss, scoring, decoding, its batch layout) is the base model's, unchanged.
gin/runs/lora.gin trains only the adapters of a checkpoint's model through the train CLI.
"""

import copy
from typing import Any

import flax.linen as nn
import gin
import jax

from model_zoo import models
from model_zoo.layers import lora

ADAPTER_SEED = 0x10A  # folded into the init rng for the adapters' A matrices
DROPOUT_SEED = 0x10B  # folded into the "dropout" rng for rank dropout


class LoraModule:
  """Stands in for a Flax module: its parameters carry adapters, merged before every apply.
  Any other attribute (the module's `config`, its methods' names) is the module's."""

  def __init__(self, module: nn.Module, config: lora.LoraConfig):
    self.module = module
    self.lora_config = config

  def __getattr__(self, name: str) -> Any:
    return getattr(self.module, name)

  def init(self, rngs, *args, **kwargs) -> dict:
    variables = self.module.init(rngs, *args, **kwargs)
    rng = rngs["params"] if isinstance(rngs, dict) else rngs
    params = lora.init_adapters(
        jax.random.fold_in(rng, ADAPTER_SEED), variables["params"], self.lora_config
    )
    return {**variables, "params": params}

  def apply(self, variables, *args, rngs=None, **kwargs):
    config = self.lora_config
    dropout_rng = (rngs or {}).get("dropout") if isinstance(rngs, dict) else None
    if dropout_rng is not None:
      dropout_rng = jax.random.fold_in(dropout_rng, DROPOUT_SEED)
    params = lora.merge(variables["params"], config.scale, config.rank_dropout_rate, dropout_rng)
    return self.module.apply({**variables, "params": params}, *args, rngs=rngs, **kwargs)


@gin.configurable
def lora_model(
    model: models.BaseModel = gin.REQUIRED, config: lora.LoraConfig = gin.REQUIRED
) -> models.BaseModel:
  """`model` with LoRA adapters on the kernels `config` targets (module docstring)."""
  adapted = copy.copy(model)
  adapted.module = LoraModule(model.module, config)
  return adapted
