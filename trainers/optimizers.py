"""Gin-configurable optax optimizers and learning-rate schedules (T5X defaults: Adafactor, rsqrt)."""

from typing import Callable, Optional

import gin
import jax.numpy as jnp
import optax

from trainers import run_checks

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


def _checked(
    schedule: Schedule, name: str, learning_rate: float, warmup_steps: int = 0
) -> Schedule:
  """Refuses a non-positive rate or negative warmup (naming the binding); records the warmup.

  `warmup_steps` and `gin_name` on the schedule let a run warn when it ends mid-warmup.
  """
  run_checks.positive_rate(learning_rate, f"{name}.learning_rate")
  run_checks.non_negative_int(warmup_steps, f"{name}.warmup_steps")
  schedule.warmup_steps, schedule.gin_name = warmup_steps, name
  return schedule


@gin.configurable
def constant_schedule(learning_rate: float = 1e-3) -> Schedule:
  run_checks.positive_rate(learning_rate, "constant_schedule.learning_rate")
  return optax.constant_schedule(learning_rate)


@gin.configurable
def linear_warmup_rsqrt_decay(learning_rate: float = 1e-2, warmup_steps: int = 10_000) -> Schedule:
  """T5's schedule: linear warm-up to `learning_rate`, then lr * sqrt(warmup / step)."""

  def schedule(step):
    step = jnp.asarray(step, jnp.float32) + 1.0
    warm = jnp.maximum(float(warmup_steps), 1.0)
    return learning_rate * jnp.minimum(step / warm, jnp.sqrt(warm / jnp.maximum(step, warm)))

  return _checked(schedule, "linear_warmup_rsqrt_decay", learning_rate, warmup_steps)


@gin.configurable
def warmup_cosine_decay(
    learning_rate: float = 1e-3,
    warmup_steps: int = 1000,
    decay_steps: int = 100_000,
    end_fraction: float = 0.1,
) -> Schedule:
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=learning_rate,
      warmup_steps=warmup_steps,
      decay_steps=max(decay_steps, warmup_steps + 1),
      end_value=learning_rate * end_fraction,
  )
  return _checked(schedule, "warmup_cosine_decay", learning_rate, warmup_steps)


@gin.configurable
def linear_warmup_constant(learning_rate: float = 1e-3, warmup_steps: int = 1000) -> Schedule:
  schedule = optax.join_schedules(
      [
          optax.linear_schedule(0.0, learning_rate, max(warmup_steps, 1)),
          optax.constant_schedule(learning_rate),
      ],
      [max(warmup_steps, 1)],
  )
  return _checked(schedule, "linear_warmup_constant", learning_rate, warmup_steps)


@gin.configurable
def adafactor(
    schedule: Schedule = gin.REQUIRED,
    decay_rate: float = 0.8,
    clipping_threshold: Optional[float] = 1.0,
    momentum: Optional[float] = None,
    weight_decay_rate: Optional[float] = None,
) -> optax.GradientTransformation:
  return optax.adafactor(
      learning_rate=schedule,
      decay_rate=decay_rate,
      clipping_threshold=clipping_threshold,
      momentum=momentum,
      weight_decay_rate=weight_decay_rate,
      multiply_by_parameter_scale=True,
  )


@gin.configurable
def adamw(
    schedule: Schedule = gin.REQUIRED,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
) -> optax.GradientTransformation:
  return optax.adamw(learning_rate=schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


@gin.configurable
def with_gradient_clipping(
    optimizer: optax.GradientTransformation = gin.REQUIRED, max_norm: Optional[float] = 1.0
) -> optax.GradientTransformation:
  """Clips the global gradient norm before the optimizer (None: no clipping)."""
  if max_norm is None:
    return optimizer
  return optax.chain(optax.clip_by_global_norm(max_norm), optimizer)
