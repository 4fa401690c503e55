"""Lifelong-MoE (Chen et al. 2023): a growth phase's model, regularised by distillation from the
model of the phase before.

Each phase trains a MoE model on a new data distribution with more experts per MoE layer than
the phase before (InitialCheckpoint.new_experts loads the old ones, trainers' frozen_experts
keeps them and their router columns as they were, gin/runs/lifelong_phase.gin). This Model
adds the previous phase's model, frozen, under params["teacher"]: its predictions on the same
batch, in the same step, regularise the new model,

    loss = cross entropy + distillation_weight * KL(p_old || p_new)   (per target token),

so the model keeps what it knew of the earlier distributions while it learns the new one.
The teacher is the same module with the previous phase's expert count; it runs
deterministically (no dropout, no router noise) and takes no gradient. Scoring and decoding
use the new model alone.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp

from model_zoo import models
from model_zoo.errors import ConfigError

TEACHER = "teacher"  # the params subtree of the previous phase's model


def distillation_kl(teacher_logits: jax.Array, student_logits: jax.Array) -> jax.Array:
  """KL(p_teacher || p_student) per position, in fp32, over the last axis."""
  teacher = jax.nn.log_softmax(teacher_logits.astype(jnp.float32), axis=-1)
  student = jax.nn.log_softmax(student_logits.astype(jnp.float32), axis=-1)
  return jnp.sum(jnp.exp(teacher) * (teacher - student), axis=-1)


def student_params(params: models.Params) -> models.Params:
  """The new model's parameters: everything but the teacher's."""
  return {k: v for k, v in params.items() if k != TEACHER}


@gin.configurable
class LifelongMoeModel(models.DecoderOnlyModel):
  """A decoder-only MoE model with the previous phase's model as its teacher (see above)."""

  def __init__(
      self,
      module: nn.Module,
      *,
      previous_num_experts: int = gin.REQUIRED,
      distillation_weight: float = 1.0,
      **kwargs: Any,
  ):
    super().__init__(module, **kwargs)
    moe = getattr(module.config, "moe", None)
    if moe is None:
      raise ConfigError(
          "LifelongMoeModel grows a mixture-of-experts model; its module has "
          "TransformerConfig.moe = None. Include a MoE model config (e.g. glam_tiny.gin)."
      )
    if not 1 <= previous_num_experts < moe.num_experts:
      raise ConfigError(
          f"LifelongMoeModel.previous_num_experts={previous_num_experts} and "
          f"MoeConfig.num_experts={moe.num_experts}: a growth phase adds experts, so the new "
          "count must exceed the previous phase's (and that be >= 1)."
      )
    if not distillation_weight >= 0:
      raise ConfigError(
          f"LifelongMoeModel.distillation_weight={distillation_weight} must be >= 0 (0: no "
          "distillation, the new experts alone)."
      )
    self.distillation_weight = distillation_weight
    previous = dataclasses.replace(
        module.config,
        moe=dataclasses.replace(
            moe, num_experts=previous_num_experts, top_k=min(moe.top_k, previous_num_experts)
        ),
    )
    self.teacher = module.clone(config=previous, parent=None)

  def init(self, rng: jax.Array, batch: models.Batch) -> models.Params:
    params = super().init(rng, batch)
    teacher = self.teacher.init(rng, **self._module_inputs(batch))["params"]
    return {**params, TEACHER: teacher}

  def _apply(self, variables, batch, **kwargs):
    return super()._apply(
        {**variables, "params": student_params(variables["params"])}, batch, **kwargs
    )

  def decode_inputs(self, params, batch):
    return super().decode_inputs(student_params(params), batch)

  def _token_regularisers(self, params, batch, logits):
    if self.distillation_weight == 0:
      return {}
    teacher_logits = self.teacher.apply(
        {"params": jax.lax.stop_gradient(params[TEACHER])},
        **self._module_inputs(batch),
        deterministic=True,
    )
    kl = distillation_kl(teacher_logits, logits)
    return {"distillation/kl": (kl, self.distillation_weight)}
