"""Gin-configurable optax optimizers and learning-rate schedules (T5X defaults: Adafactor, rsqrt).

Options that pick parameters (`trainable_only`, the weight-decay masks) take regexes that
`re.search` looks for in '/'-joined parameter paths, e.g. 'decoder/layers/mlp/wi_0/kernel'
(scanned layers), 'decoder/layers_0/self_attention/query/kernel' (unscanned),
'decoder/layers/pre_mlp_norm/scale', 'token_embedder/embedding', 'head/final_norm/scale'.
"""

import re
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import gin
import jax
import jax.numpy as jnp
import optax

from model_zoo.errors import ConfigError
from model_zoo.moe import growth
from trainers import run_checks

Schedule = Callable[[jnp.ndarray], jnp.ndarray]

# What weight decay leaves alone unless told otherwise: norm scales and biases.
NO_DECAY_PATTERNS = (r"(^|/)(scale|bias)$",)


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


# --- choosing parameters by path ------------------------------------------------------------
def param_path(key_path) -> str:
  """'decoder/layers/mlp/wi_0/kernel': the name that parameter patterns are matched against."""
  return jax.tree_util.keystr(key_path, simple=True, separator="/")


def _compile(patterns: Sequence[str], binding: str) -> list[re.Pattern]:
  patterns = (patterns,) if isinstance(patterns, str) else patterns
  try:
    return [re.compile(p) for p in patterns]
  except re.error as e:
    raise ConfigError(f"{binding}: {e.pattern!r} is not a valid regex ({e}).") from None


def _require_matches(rules: Mapping[str, list[re.Pattern]], paths: list[str]) -> None:
  """A pattern that matches no parameter is a ConfigError: a typo would otherwise silently
  train, freeze or decay the wrong parameters."""
  for binding, patterns in rules.items():
    for pattern in patterns:
      if not any(pattern.search(p) for p in paths):
        spread = dict.fromkeys(paths[i * (len(paths) - 1) // 4] for i in range(5))
        examples = ", ".join(repr(p) for p in spread)
        raise ConfigError(
            f"{binding}: {pattern.pattern!r} matches no parameter path; the {len(paths)} "
            f"paths look like {examples}."
        )


def _label_by_path(
    tree: Any, rules: Mapping[str, list[re.Pattern]], label: Callable[..., Any], check: bool = True
) -> Any:
  """`label(*matched)` at each parameter, matched[i] saying whether rules[i] matches its path.

  Parameters an outer mask took out (optax.MaskedNode) get no label but count for `check`.
  """
  if check:
    flat = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: isinstance(x, optax.MaskedNode)
    )[0]
    _require_matches(rules, [param_path(p) for p, _ in flat])

  def one(key_path, _):
    path = param_path(key_path)
    return label(*(any(r.search(path) for r in patterns) for patterns in rules.values()))

  return jax.tree_util.tree_map_with_path(one, tree)


def _decay_mask(no_decay_patterns: Optional[Sequence[str]], binding: str) -> Callable:
  """params -> True where weight decay applies.

  None means NO_DECAY_PATTERNS, unchecked (a model without norms is fine); patterns a user
  gives must each match some parameter.
  """
  patterns = NO_DECAY_PATTERNS if no_decay_patterns is None else no_decay_patterns
  rules = {binding: _compile(patterns, binding)}
  return lambda params: _label_by_path(
      params, rules, lambda excluded: not excluded, check=no_decay_patterns is not None
  )


# --- optimizers -----------------------------------------------------------------------------
@gin.configurable
def adafactor(
    schedule: Schedule = gin.REQUIRED,
    decay_rate: float = 0.8,
    clipping_threshold: Optional[float] = 1.0,
    momentum: Optional[float] = None,
    weight_decay_rate: Optional[float] = None,
    no_decay_patterns: Optional[Sequence[str]] = None,
) -> optax.GradientTransformation:
  """T5X's Adafactor; `weight_decay_rate` (not scaled by the learning rate) skips the
  parameters `no_decay_patterns` match (None: norm scales and biases)."""
  return optax.adafactor(
      learning_rate=schedule,
      decay_rate=decay_rate,
      clipping_threshold=clipping_threshold,
      momentum=momentum,
      weight_decay_rate=weight_decay_rate,
      weight_decay_mask=_decay_mask(no_decay_patterns, "adafactor.no_decay_patterns"),
      multiply_by_parameter_scale=True,
  )


@gin.configurable
def adamw(
    schedule: Schedule = gin.REQUIRED,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    no_decay_patterns: Optional[Sequence[str]] = None,
) -> optax.GradientTransformation:
  """AdamW; decoupled weight decay (lr * weight_decay * param per step) skips the parameters
  `no_decay_patterns` match (None: norm scales and biases; [] decays everything)."""
  return optax.adamw(
      learning_rate=schedule,
      b1=b1,
      b2=b2,
      eps=eps,
      weight_decay=weight_decay,
      mask=_decay_mask(no_decay_patterns, "adamw.no_decay_patterns"),
  )


class TrainableOnly(NamedTuple):
  """An optax transformation that updates only the parameters `trained(params)` marks True.

  Its own type (not a GradientTransformation) lets the Trainer report the gradient norm over
  trained parameters and lets `with_gradient_clipping` refuse to wrap it.
  """

  init: optax.TransformInitFn
  update: optax.TransformUpdateExtraArgsFn
  trained: Callable[[Any], Any]


@gin.configurable
def trainable_only(
    optimizer: optax.GradientTransformation = gin.REQUIRED,
    trainable_patterns: Sequence[str] = (".*",),
    frozen_patterns: Sequence[str] = (),
) -> TrainableOnly:
  """Trains the parameters a trainable pattern matches and no frozen pattern does.

  Frozen parameters get zero updates, so they stay bit-identical, and `optimizer` keeps no
  state for them. Make this the outermost wrapper: `optimizer`, including its gradient
  clipping, then sees only the trained parameters' gradients. Each pattern must match some
  parameter; that is checked (a ConfigError) when the optimizer is initialised on the params.
  """
  given = {
      "trainable_only.trainable_patterns": trainable_patterns,
      "trainable_only.frozen_patterns": frozen_patterns,
  }
  rules = {binding: _compile(patterns, binding) for binding, patterns in given.items()}

  def labels(params):
    result = _label_by_path(
        params, rules, lambda trainable, frozen: "trained" if trainable and not frozen else "frozen"
    )
    if "trained" not in jax.tree.leaves(result):
      raise ConfigError(
          "trainable_only: trainable_patterns and frozen_patterns leave no parameter to train."
      )
    return result

  tx = optax.multi_transform({"trained": optimizer, "frozen": optax.set_to_zero()}, labels)
  return TrainableOnly(
      tx.init,
      tx.update,
      lambda params: jax.tree.map(lambda label: label == "trained", labels(params)),
  )


def trained_mask(optimizer: Any, params: Any) -> Any:
  """True at each parameter that `optimizer` updates: all of them unless it is trainable_only."""
  if isinstance(optimizer, TrainableOnly):
    return optimizer.trained(params)
  return jax.tree.map(lambda _: True, params)


@gin.configurable
def frozen_experts(
    optimizer: optax.GradientTransformation = gin.REQUIRED, num_frozen: int = gin.REQUIRED
) -> optax.GradientTransformation:
  """Keeps the first `num_frozen` experts of every MoE layer, and their router columns, as they
  are (Lifelong-MoE: a growth phase trains the new experts and the rest of the model).

  Their gradients are zeroed before `optimizer` (clipping and moments see none) and their
  updates after it (weight decay too), so they stay bit-identical; being slices of the expert
  kernels, they keep their optimizer state, sharded like the kernels. Checked when the
  optimizer is initialised: the model must have MoE layers with more than `num_frozen`
  experts.
  """

  def zero_frozen(tree):
    def one(key_path, x):
      axis = growth.expert_axis(param_path(key_path), x.ndim)
      if axis is None:
        return x
      shape = [1] * x.ndim
      shape[axis] = x.shape[axis]
      trained = (jnp.arange(x.shape[axis]) >= num_frozen).reshape(shape)
      return jnp.where(trained, x, jnp.zeros_like(x))

    return jax.tree_util.tree_map_with_path(one, tree)

  def init(params):
    experts = {}
    for key_path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
      path = param_path(key_path)
      if (axis := growth.expert_axis(path, x.ndim)) is not None:
        experts[path] = x.shape[axis]
    if not experts:
      raise ConfigError("frozen_experts: the model has no mixture-of-experts layers to freeze.")
    path = min(experts, key=experts.get)
    if not 1 <= num_frozen < experts[path]:
      raise ConfigError(
          f"frozen_experts.num_frozen={num_frozen}, and {path} has {experts[path]} experts: a "
          "growth phase freezes the previous phase's experts and trains the new ones, so set it "
          "to the previous phase's MoeConfig.num_experts (>= 1, below this model's). A frozen "
          "teacher belongs outside it: trainable_only.optimizer = @frozen_experts()."
      )
    return optimizer.init(params)

  def update(updates, state, params=None):
    updates, state = optimizer.update(zero_frozen(updates), state, params)
    return zero_frozen(updates), state

  return optax.GradientTransformation(init, update)


@gin.configurable
def with_gradient_clipping(
    optimizer: optax.GradientTransformation = gin.REQUIRED, max_norm: Optional[float] = 1.0
) -> optax.GradientTransformation:
  """Clips the global gradient norm before the optimizer (None: no clipping).

  Inside `trainable_only` the norm is over the trained parameters only; wrapping a
  trainable_only optimizer would count frozen gradients too, so it is refused.
  """
  if max_norm is None:
    return optimizer
  if isinstance(optimizer, TrainableOnly):
    raise ConfigError(
        "with_gradient_clipping.optimizer is a trainable_only() optimizer, so clipping would "
        "count the frozen parameters' gradients; nest them the other way round: "
        "Trainer.optimizer = @trainable_only() and trainable_only.optimizer = "
        "@with_gradient_clipping()."
    )
  return optax.chain(optax.clip_by_global_norm(max_norm), optimizer)
