"""Routing of tokens to experts: top-k token choice (GShard / GLaM) and expert choice.

Both take router logits [groups, tokens, experts] and return a `Routing`: one-hot `dispatch`
and weighted `combine` tensors [groups, tokens, experts, capacity], the layout of GShard's
einsum dispatch, plus what the aux losses and metrics need. Tokens are routed within their
group, so the cost of routing does not grow with the global batch. Gates are a softmax in
fp32 whatever the activation dtype.

Top-k token choice: each token picks its k experts by gate. Combine weights are the raw gate
for k = 1 (Switch) and the gates renormalised over the chosen experts for k >= 2 (GShard,
GLaM). Each expert has `capacity` slots, filled in token order, every token's first choice
before any second choice; a choice that finds its expert full is dropped (the token passes
through the residual). The "random" second-expert policy (GShard) dispatches a token's second
choice only with probability 2 * its renormalised weight, which spares capacity for tokens
whose second gate is small.

Expert choice (Zhou et al. 2022): each expert takes the `capacity` tokens of its group with
the largest gate for it, so no expert overflows and a token may get any number of experts.
"""

import math
from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp

from model_zoo.errors import ConfigError
from model_zoo.layers import types

SECOND_EXPERT_POLICIES = ("all", "random")


@flax.struct.dataclass
class Routing:
  """Where each token goes and with what weight; shapes [groups, tokens, experts, capacity]."""

  dispatch: types.Array  # 1.0 where token t fills slot c of expert e, else 0.0 (fp32)
  combine: types.Array  # that choice's weight at the same place, else 0.0 (fp32)
  gates: types.Array  # softmax of the logits [groups, tokens, experts] (fp32)
  first_choice: types.Array  # each token's top expert [groups, tokens] (int32; before capacity)
  # Top-k only (None for expert choice), before capacity, for dropless dispatch:
  # each token's k experts [groups, tokens, k] (int32) and their combine weights (fp32; 0 for
  # a second choice the "random" policy did not dispatch).
  expert_index: Optional[types.Array] = None
  expert_weight: Optional[types.Array] = None


def capacity(group_size: int, capacity_factor: float, k: int, num_experts: int) -> int:
  """Slots per expert for top-k routing: ceil(group_size * capacity_factor * k / E), >= 1."""
  _check_factor(capacity_factor)
  return max(1, math.ceil(group_size * capacity_factor * k / num_experts))


def expert_choice_capacity(group_size: int, capacity_factor: float, num_experts: int) -> int:
  """Tokens per expert for expert choice: ceil(group_size * capacity_factor / E), >= 1."""
  _check_factor(capacity_factor)
  return max(1, math.ceil(group_size * capacity_factor / num_experts))


def _check_factor(capacity_factor: float) -> None:
  if not capacity_factor > 0:
    raise ConfigError(
        f"MoeConfig capacity factor {capacity_factor} must be > 0 (1.0 gives every expert an "
        "even share of the tokens; GShard and GLaM use 2.0)."
    )


def top_k_routing(
    logits: types.Array,
    k: int,
    capacity: int,
    second_policy: str = "all",
    rng: Optional[jax.Array] = None,
) -> Routing:
  """Top-k token choice with `capacity` slots per expert (see the module docstring).

  `rng` draws the "random" policy's coin flips; without it (eval, decoding) every second
  choice is dispatched, as under "all".
  """
  num_experts = logits.shape[-1]
  if not 1 <= k <= num_experts:
    raise ConfigError(f"MoeConfig.top_k={k} must be between 1 and num_experts={num_experts}.")
  if second_policy not in SECOND_EXPERT_POLICIES:
    raise ConfigError(
        f"MoeConfig.second_expert_policy={second_policy!r}; expected one of "
        f"{list(SECOND_EXPERT_POLICIES)}."
    )
  gates = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  indices, choices, weights, remaining = [], [], [], gates
  for _ in range(k):
    indices.append(jnp.argmax(remaining, axis=-1).astype(jnp.int32))
    choice = jax.nn.one_hot(indices[-1], num_experts, dtype=jnp.float32)
    choices.append(choice)
    weights.append(jnp.sum(gates * choice, axis=-1))  # [groups, tokens]
    remaining = jnp.where(choice > 0, -jnp.inf, remaining)
  if k > 1:
    total = sum(weights)
    weights = [w / total for w in weights]
    if second_policy == "random" and rng is not None:
      keep = jax.random.uniform(rng, weights[1].shape) < 2 * weights[1]
      choices[1] = choices[1] * keep[..., None]
      weights[1] = weights[1] * keep
  dispatch = combine = 0.0
  filled = jnp.zeros(gates.shape[:1] + gates.shape[2:], jnp.float32)  # [groups, experts]
  for choice, weight in zip(choices, weights):
    # This choice's slot in its expert: the kept earlier choices, then tokens before it.
    slot = filled[:, None, :] + jnp.cumsum(choice, axis=1) - choice
    kept = choice * (slot < capacity)
    filled = filled + jnp.sum(kept, axis=1)
    placed = kept[..., None] * jax.nn.one_hot(slot.astype(jnp.int32), capacity, dtype=jnp.float32)
    dispatch = dispatch + placed
    combine = combine + placed * weight[..., None, None]
  return Routing(
      dispatch=dispatch,
      combine=combine,
      gates=gates,
      first_choice=indices[0],
      expert_index=jnp.stack(indices, axis=-1),
      expert_weight=jnp.stack(weights, axis=-1),
  )


def expert_choice_routing(logits: types.Array, capacity: int) -> Routing:
  """Each expert takes the `capacity` tokens of its group with the largest gate for it."""
  group_size = logits.shape[1]
  if not 1 <= capacity <= group_size:
    raise ConfigError(
        f"Expert-choice capacity {capacity} must be between 1 and the group size {group_size}: "
        "lower MoeConfig's capacity factor or raise its group size."
    )
  gates = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  _, tokens = jax.lax.top_k(jnp.swapaxes(gates, 1, 2), capacity)  # [groups, experts, capacity]
  dispatch = jnp.moveaxis(jax.nn.one_hot(tokens, group_size, dtype=jnp.float32), 3, 1)
  combine = dispatch * gates[..., None]
  first_choice = jnp.argmax(gates, axis=-1).astype(jnp.int32)
  return Routing(dispatch=dispatch, combine=combine, gates=gates, first_choice=first_choice)


def load_balancing_loss(routing: Routing) -> jax.Array:
  """E * sum_e f_e * P_e, averaged over groups: f_e the fraction of tokens whose first choice
  is e (before capacity), P_e the mean gate of e. 1 under uniform routing, E at worst."""
  num_experts = routing.gates.shape[-1]
  fraction = jnp.mean(jax.nn.one_hot(routing.first_choice, num_experts), axis=1)
  mean_gate = jnp.mean(routing.gates, axis=1)
  return jnp.mean(num_experts * jnp.sum(fraction * mean_gate, axis=-1))


def router_z_loss(logits: types.Array) -> jax.Array:
  """Mean over tokens of logsumexp(logits)^2 (ST-MoE): keeps router logits small."""
  return jnp.mean(jnp.square(jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)))
