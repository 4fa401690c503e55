"""The NumPy routing reference against cases worked out by hand, plus invariants on random logits.

Logits are the logs of chosen probabilities, so the gates are those probabilities (to rounding)
and every expected weight is a simple fraction.
"""

import math

import numpy as np
import pytest

from tests.model_zoo.moe import numpy_routing as ref


def _logits(probs):
  """One group whose gates are the given rows of probabilities."""
  return np.log(np.asarray(probs, np.float64))[None]


def _slots(num_tokens, num_experts, capacity, filled):
  """Expected (dispatch, combine) for one group from {(token, expert, slot): weight}."""
  dispatch = np.zeros((1, num_tokens, num_experts, capacity))
  combine = np.zeros((1, num_tokens, num_experts, capacity))
  for (s, e, c), w in filled.items():
    dispatch[0, s, e, c] = 1.0
    combine[0, s, e, c] = w
  return dispatch, combine


def _assert_routing(got, want):
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-12)


def test_top1_later_token_dropped_when_expert_full():
  logits = _logits([[0.75, 0.25], [0.6, 0.4], [0.2, 0.8], [0.1, 0.9]])
  # Tokens 0 and 1 both want expert 0 and tokens 2 and 3 expert 1; one slot each, so the later
  # token of each pair is dropped. k == 1 keeps the raw gate.
  want = _slots(4, 2, 1, {(0, 0, 0): 0.75, (2, 1, 0): 0.8})
  _assert_routing(ref.top_k_routing(logits, k=1, capacity=1), want)


def test_top2_second_choices_after_first_choices_and_overflow():
  logits = _logits([[0.5, 0.3, 0.2], [0.6, 0.1, 0.3], [0.7, 0.2, 0.1], [0.3, 0.1, 0.6]])
  # First choices: e0 <- t0, t1, t2 (slots 0-2, now full), e2 <- t3 (slot 0).
  # Second choices: t0 -> e1 slot 0, t1 -> e2 slot 1 (after t3's first choice although t1 < t3),
  # t2 -> e1 slot 1, t3 -> e0 full: dropped, so t3 keeps only its renormalised 0.6 / 0.9.
  want = _slots(
      4,
      3,
      3,
      {
          (0, 0, 0): 0.5 / 0.8,
          (1, 0, 1): 0.6 / 0.9,
          (2, 0, 2): 0.7 / 0.9,
          (3, 2, 0): 0.6 / 0.9,
          (0, 1, 0): 0.3 / 0.8,
          (1, 2, 1): 0.3 / 0.9,
          (2, 1, 1): 0.2 / 0.9,
      },
  )
  _assert_routing(ref.top_k_routing(logits, k=2, capacity=3), want)


def test_top2_random_policy():
  logits = _logits([[0.5, 0.3, 0.2], [0.6, 0.1, 0.3], [0.5, 0.1, 0.4]])
  uniform = np.array([[0.7, 0.7, 0.1]])
  # t0: 2 * w2 = 0.75 > 0.7, kept. t1: 2 * w2 = 2/3 <= 0.7, skipped: no slot, and w1 stays 2/3.
  # t2: 2 * w2 = 8/9 > 0.1, kept, in e2's slot 0 since t1's skipped choice took none.
  want = _slots(
      3,
      3,
      3,
      {
          (0, 0, 0): 0.5 / 0.8,
          (1, 0, 1): 0.6 / 0.9,
          (2, 0, 2): 0.5 / 0.9,
          (0, 1, 0): 0.3 / 0.8,
          (2, 2, 0): 0.4 / 0.9,
      },
  )
  got = ref.top_k_routing(logits, k=2, capacity=3, second_policy="random", uniform=uniform)
  _assert_routing(got, want)


def test_expert_choice_tie_goes_to_lower_token():
  logits = _logits([[0.5, 0.5], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75]])
  # e0 takes t1 then t0 (tied with t2); e1 takes t3 then t0 (tied with t2). t0 is taken twice,
  # t2 not at all.
  want = _slots(4, 2, 2, {(1, 0, 0): 0.75, (0, 0, 1): 0.5, (3, 1, 0): 0.75, (0, 1, 1): 0.5})
  _assert_routing(ref.expert_choice_routing(logits, capacity=2), want)


def test_load_balancing_loss():
  balanced = _logits([[0.75, 0.25], [0.75, 0.25], [0.25, 0.75], [0.25, 0.75]])
  # f = (1/2, 1/2), P = (1/2, 1/2): 2 * (1/4 + 1/4) = 1.
  assert ref.load_balancing_loss(balanced) == pytest.approx(1.0, abs=1e-12)
  collapsed = _logits([[0.75, 0.25]] * 4)
  # f = (1, 0), P = (3/4, 1/4): 2 * 3/4 = 1.5.
  assert ref.load_balancing_loss(collapsed) == pytest.approx(1.5, abs=1e-12)


def test_router_z_loss_of_zero_logits():
  assert ref.router_z_loss(np.zeros((2, 4, 3))) == pytest.approx(math.log(3) ** 2, abs=1e-12)


def test_capacities():
  assert ref.capacity(8, 1.25, 2, 4) == 5
  assert ref.capacity(4, 1.0, 1, 8) == 1  # ceil(0.5)
  assert ref.capacity(4, 0.0, 1, 8) == 1  # at least one slot
  assert ref.expert_choice_capacity(8, 2.0, 4) == 4
  assert ref.expert_choice_capacity(6, 1.0, 4) == 2  # ceil(1.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(k=0, capacity=1),
        dict(k=4, capacity=1),
        dict(k=1, capacity=0),
        dict(k=2, capacity=1, second_policy="best"),
        dict(k=2, capacity=1, second_policy="random"),  # no uniform draws
        dict(k=1, capacity=1, second_policy="random", uniform=np.zeros((1, 2))),
    ],
)
def test_top_k_errors(kwargs):
  with pytest.raises(ValueError):
    ref.top_k_routing(np.zeros((1, 2, 3)), **kwargs)


@pytest.mark.parametrize("capacity", [0, 3])
def test_expert_choice_errors(capacity):
  with pytest.raises(ValueError):
    ref.expert_choice_routing(np.zeros((1, 2, 3)), capacity)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k,policy", [(1, "all"), (2, "all"), (2, "random"), (3, "all")])
def test_top_k_invariants(seed, k, policy):
  rng = np.random.default_rng(seed)
  groups, tokens, experts = 3, 8, 4
  logits = rng.normal(size=(groups, tokens, experts))
  uniform = rng.uniform(size=(groups, tokens)) if policy == "random" else None
  cap = ref.capacity(tokens, 1.0, k, experts)
  dispatch, combine = ref.top_k_routing(logits, k, cap, policy, uniform)
  assert dispatch.shape == combine.shape == (groups, tokens, experts, cap)
  assert np.all(dispatch.sum(axis=1) <= 1)  # one token per slot
  used = dispatch.sum(axis=(1, 3))  # [G, E]
  # Each expert fills its first slots with no gap, so at most C of them.
  for g in range(groups):
    for e in range(experts):
      n = int(used[g, e])
      np.testing.assert_array_equal(dispatch[g, :, e, :].sum(axis=0), [1] * n + [0] * (cap - n))
  assert np.all(dispatch.sum(axis=3) <= 1)  # at most one slot of an expert per token
  assert np.all(dispatch.sum(axis=(2, 3)) <= k)
  assert np.all((combine > 0) == (dispatch > 0))

  _, combine = ref.top_k_routing(logits, k, tokens, policy, uniform)  # nothing overflows
  sums = combine.sum(axis=(2, 3))
  if k == 1:
    np.testing.assert_allclose(sums, ref.softmax(logits).max(axis=-1), rtol=0, atol=1e-12)
  elif policy == "all":
    np.testing.assert_allclose(sums, 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_expert_choice_invariants(seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(2, 8, 4))
  dispatch, combine = ref.expert_choice_routing(logits, capacity=3)
  np.testing.assert_array_equal(dispatch.sum(axis=1), 1.0)  # every slot holds one token
  assert np.all(dispatch.sum(axis=3) <= 1)
  gates = ref.softmax(logits)
  np.testing.assert_array_equal(combine, dispatch * gates[..., None])
  # Each expert's picks are its 3 largest gates, in descending order.
  picked_gates = combine.sum(axis=1)  # [G, E, C]
  np.testing.assert_array_equal(picked_gates, -np.sort(-gates, axis=1)[:, :3, :].transpose(0, 2, 1))
