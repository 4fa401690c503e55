"""Loop-by-loop NumPy float64 reference of the mixture-of-experts routing rules.

Written from the rules (GShard / GLaM top-k token choice with per-expert capacity, and expert
choice), not from the JAX code, so the tests can use it as an independent oracle. Explicit
Python loops over groups, tokens and experts and explicit per-expert slot counters keep every
rule visible; speed does not matter at test sizes. Logits are [G, S, E] (groups, tokens per
group, experts); dispatch and combine are [G, S, E, C] with C the capacity (slots per expert).
"""

import math

import numpy as np

POLICIES = ("all", "random")


def softmax(logits: np.ndarray) -> np.ndarray:
  """Softmax over the last axis, shifted by the max so large logits do not overflow."""
  z = np.asarray(logits, np.float64)
  z = z - np.max(z, axis=-1, keepdims=True)
  e = np.exp(z)
  return e / np.sum(e, axis=-1, keepdims=True)


def _as_logits(logits: np.ndarray) -> np.ndarray:
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 3:
    raise ValueError(f"logits must be [groups, tokens, experts], got shape {logits.shape}")
  return logits


def _ranked_experts(gates: np.ndarray, k: int) -> list[int]:
  """The k experts with the largest gates, best first; a tie goes to the lower index."""
  chosen = []
  for _ in range(k):
    best = None
    for e in range(gates.shape[0]):
      if e in chosen:
        continue
      if best is None or gates[e] > gates[best]:  # strict: the lower index wins a tie
        best = e
    chosen.append(best)
  return chosen


def top_k_routing(
    logits: np.ndarray,
    k: int,
    capacity: int,
    second_policy: str = "all",
    uniform: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Token-choice top-k routing with capacity; returns (dispatch, combine), [G, S, E, C].

  Slots are filled choice by choice (all first choices of the group in token order, then all
  second choices, ...), so a later choice lands after every kept earlier choice of its expert
  and a choice that finds its expert full is dropped. With k == 1 the combine weight is the raw
  gate (Switch); with k >= 2 it is the gate renormalised over the token's k chosen experts
  (GShard / GLaM). Under "random" (k == 2 only) the second choice is dispatched only if
  uniform[g, s] < 2 * w2; a skipped choice takes no slot and w1 is left as it is.
  """
  logits = _as_logits(logits)
  num_groups, group_size, num_experts = logits.shape
  if not 1 <= k <= num_experts:
    raise ValueError(f"k must be in [1, {num_experts}], got {k}")
  if capacity < 1:
    raise ValueError(f"capacity must be at least 1, got {capacity}")
  if second_policy not in POLICIES:
    raise ValueError(f"second_policy must be one of {POLICIES}, got {second_policy!r}")
  if second_policy == "random":
    if k != 2:
      raise ValueError(f"second_policy 'random' needs k == 2, got k = {k}")
    if uniform is None or np.shape(uniform) != (num_groups, group_size):
      raise ValueError(f"second_policy 'random' needs uniform of shape {logits.shape[:2]}")
    uniform = np.asarray(uniform, np.float64)

  gates = softmax(logits)
  dispatch = np.zeros((num_groups, group_size, num_experts, capacity))
  combine = np.zeros((num_groups, group_size, num_experts, capacity))
  for g in range(num_groups):
    choices = []  # choices[s][j]: token s's (j+1)-th expert
    weights = []  # weights[s][j]: its combine weight
    for s in range(group_size):
      experts = _ranked_experts(gates[g, s], k)
      if k == 1:
        token_weights = [gates[g, s, experts[0]]]
      else:
        total = sum(gates[g, s, e] for e in experts)
        token_weights = [gates[g, s, e] / total for e in experts]
      choices.append(experts)
      weights.append(token_weights)

    slots_used = [0] * num_experts
    for j in range(k):
      for s in range(group_size):
        e, w = choices[s][j], weights[s][j]
        if j == 1 and second_policy == "random" and not uniform[g, s] < 2.0 * w:
          continue
        if slots_used[e] < capacity:
          c = slots_used[e]
          dispatch[g, s, e, c] = 1.0
          combine[g, s, e, c] = w
          slots_used[e] += 1
  return dispatch, combine


def expert_choice_routing(logits: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray]:
  """Expert-choice routing; returns (dispatch, combine), [G, S, E, C].

  Gates are the per-token softmax over experts; each expert then takes the C tokens of the
  group with the largest gates for it, slot c being its c-th pick (a tie goes to the lower
  token index). A token may be taken by several experts or by none.
  """
  logits = _as_logits(logits)
  num_groups, group_size, num_experts = logits.shape
  if not 1 <= capacity <= group_size:
    raise ValueError(f"capacity must be in [1, {group_size}], got {capacity}")

  gates = softmax(logits)
  dispatch = np.zeros((num_groups, group_size, num_experts, capacity))
  combine = np.zeros((num_groups, group_size, num_experts, capacity))
  for g in range(num_groups):
    for e in range(num_experts):
      picked = []
      for c in range(capacity):
        best = None
        for s in range(group_size):
          if s in picked:
            continue
          if best is None or gates[g, s, e] > gates[g, best, e]:  # strict: lower token wins
            best = s
        picked.append(best)
        dispatch[g, best, e, c] = 1.0
        combine[g, best, e, c] = gates[g, best, e]
  return dispatch, combine


def load_balancing_loss(logits: np.ndarray) -> float:
  """Mean over groups of E * sum_e f_e * P_e (Switch / GShard auxiliary loss).

  f_e is the fraction of the group's tokens whose first choice (before capacity) is e, P_e the
  group's mean gate for e; it is 1 when both are uniform.
  """
  logits = _as_logits(logits)
  num_groups, group_size, num_experts = logits.shape
  gates = softmax(logits)
  total = 0.0
  for g in range(num_groups):
    first_counts = [0] * num_experts
    gate_sums = [0.0] * num_experts
    for s in range(group_size):
      first_counts[_ranked_experts(gates[g, s], 1)[0]] += 1
      for e in range(num_experts):
        gate_sums[e] += gates[g, s, e]
    total += num_experts * sum(
        (first_counts[e] / group_size) * (gate_sums[e] / group_size) for e in range(num_experts)
    )
  return float(total / num_groups)


def router_z_loss(logits: np.ndarray) -> float:
  """Mean over groups and tokens of logsumexp(logits over experts) ** 2 (ST-MoE)."""
  logits = _as_logits(logits)
  num_groups, group_size, _ = logits.shape
  total = 0.0
  for g in range(num_groups):
    for s in range(group_size):
      row = logits[g, s]
      m = np.max(row)
      total += (m + np.log(np.sum(np.exp(row - m)))) ** 2
  return float(total / (num_groups * group_size))


def capacity(group_size: int, capacity_factor: float, k: int, num_experts: int) -> int:
  """Slots per expert for top-k routing: the group's k * S choices spread evenly, scaled."""
  return max(1, math.ceil(group_size * capacity_factor * k / num_experts))


def expert_choice_capacity(group_size: int, capacity_factor: float, num_experts: int) -> int:
  """Tokens each expert takes under expert choice: S / E scaled by the capacity factor."""
  return max(1, math.ceil(group_size * capacity_factor / num_experts))
