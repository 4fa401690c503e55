"""model_zoo.moe.routers against the loop-by-loop NumPy reference (numpy_routing.py): which
tokens fill which slots, which are dropped, their combine weights, the aux losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo.errors import ConfigError
from model_zoo.moe import routers
from tests.model_zoo.moe import numpy_routing as ref


def _logits(seed: int, groups: int = 2, tokens: int = 16, experts: int = 4) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(groups, tokens, experts)) * 2.0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k,capacity", [(1, 2), (1, 16), (2, 3), (2, 6), (2, 32), (3, 5)])
def test_top_k_matches_reference(seed, k, capacity):
  logits = _logits(seed)
  got = routers.top_k_routing(jnp.asarray(logits, jnp.float32), k, capacity)
  want_dispatch, want_combine = ref.top_k_routing(logits, k, capacity)
  np.testing.assert_array_equal(np.asarray(got.dispatch), want_dispatch)
  np.testing.assert_allclose(np.asarray(got.combine), want_combine, rtol=1e-5, atol=1e-6)


def test_small_capacities_really_drop():
  """The cases above include drops: with 16 tokens over 4 experts and 2-3 slots, some choices
  find their expert full (else the reference comparison would not test overflow)."""
  routing = routers.top_k_routing(jnp.asarray(_logits(0), jnp.float32), 2, 3)
  assert float(jnp.sum(routing.dispatch)) < 2 * 2 * 16


@pytest.mark.parametrize("seed", [0, 1])
def test_random_second_expert_matches_reference(seed):
  logits = _logits(seed)
  rng = jax.random.PRNGKey(seed)
  got = routers.top_k_routing(jnp.asarray(logits, jnp.float32), 2, 6, "random", rng)
  uniform = np.asarray(jax.random.uniform(rng, logits.shape[:2]))  # the draws the router makes
  want_dispatch, want_combine = ref.top_k_routing(logits, 2, 6, "random", uniform)
  np.testing.assert_array_equal(np.asarray(got.dispatch), want_dispatch)
  np.testing.assert_allclose(np.asarray(got.combine), want_combine, rtol=1e-5, atol=1e-6)
  all_dispatch, _ = ref.top_k_routing(logits, 2, 6, "all")
  assert want_dispatch.sum() < all_dispatch.sum()  # some second choices were skipped


def test_random_policy_without_rng_dispatches_every_choice():
  """Eval and decoding pass no rng: the second choice always goes, as under "all"."""
  logits = jnp.asarray(_logits(3), jnp.float32)
  random = routers.top_k_routing(logits, 2, 6, "random", None)
  every = routers.top_k_routing(logits, 2, 6, "all")
  np.testing.assert_array_equal(np.asarray(random.dispatch), np.asarray(every.dispatch))


def test_expert_index_and_weight_are_the_choices_before_capacity():
  """What dropless dispatch uses: with room for everyone they rebuild the combine tensor."""
  logits = jnp.asarray(_logits(4), jnp.float32)
  routing = routers.top_k_routing(logits, 2, 32)
  rebuilt = jnp.einsum(
      "gsk,gske->gse", routing.expert_weight, jax.nn.one_hot(routing.expert_index, 4)
  )
  np.testing.assert_allclose(
      np.asarray(rebuilt), np.asarray(jnp.sum(routing.combine, axis=-1)), rtol=1e-6
  )
  np.testing.assert_array_equal(np.asarray(routing.first_choice), np.argmax(_logits(4), -1))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("capacity", [1, 4, 16])
def test_expert_choice_matches_reference(seed, capacity):
  logits = _logits(seed)
  logits[0, 5] = logits[0, 2]  # a tie: equal gates for two tokens
  got = routers.expert_choice_routing(jnp.asarray(logits, jnp.float32), capacity)
  want_dispatch, want_combine = ref.expert_choice_routing(logits, capacity)
  np.testing.assert_array_equal(np.asarray(got.dispatch), want_dispatch)
  np.testing.assert_allclose(np.asarray(got.combine), want_combine, rtol=1e-5, atol=1e-6)
  assert got.expert_index is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_losses_match_reference(seed):
  logits = _logits(seed)
  routing = routers.top_k_routing(jnp.asarray(logits, jnp.float32), 2, 8)
  np.testing.assert_allclose(
      float(routers.load_balancing_loss(routing)), ref.load_balancing_loss(logits), rtol=1e-5
  )
  np.testing.assert_allclose(
      float(routers.router_z_loss(jnp.asarray(logits, jnp.float32))),
      ref.router_z_loss(logits),
      rtol=1e-5,
  )


def test_load_balancing_loss_is_one_when_uniform_and_more_when_collapsed():
  uniform = routers.top_k_routing(jnp.zeros((1, 8, 4)), 1, 8)
  # zero logits: equal gates, every first choice expert 0 (ties): f = (1,0,0,0), P = 1/4
  np.testing.assert_allclose(float(routers.load_balancing_loss(uniform)), 1.0, rtol=1e-6)
  balanced = np.log(np.full((1, 8, 4), 0.1))
  for t in range(8):
    balanced[0, t, t % 4] = np.log(0.7)  # two tokens prefer each expert, symmetric gates
  routing = routers.top_k_routing(jnp.asarray(balanced, jnp.float32), 1, 8)
  np.testing.assert_allclose(float(routers.load_balancing_loss(routing)), 1.0, rtol=1e-6)
  collapsed = np.log(np.tile([0.7, 0.1, 0.1, 0.1], (1, 8, 1)))
  routing = routers.top_k_routing(jnp.asarray(collapsed, jnp.float32), 1, 8)
  np.testing.assert_allclose(float(routers.load_balancing_loss(routing)), 4 * 0.7, rtol=1e-6)


@pytest.mark.parametrize(
    "group_size,factor,k,experts", [(16, 2.0, 2, 4), (10, 1.25, 1, 3), (7, 0.1, 2, 8)]
)
def test_capacities_match_reference(group_size, factor, k, experts):
  assert routers.capacity(group_size, factor, k, experts) == ref.capacity(
      group_size, factor, k, experts
  )
  assert routers.expert_choice_capacity(group_size, factor, experts) == (
      ref.expert_choice_capacity(group_size, factor, experts)
  )


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda x: routers.top_k_routing(x, 0, 4), "top_k=0"),
        (lambda x: routers.top_k_routing(x, 5, 4), "top_k=5"),
        (lambda x: routers.top_k_routing(x, 2, 4, "sometimes"), "second_expert_policy"),
        (lambda x: routers.expert_choice_routing(x, 17), "group size 16"),
        (lambda x: routers.capacity(16, 0.0, 2, 4), "capacity factor 0.0"),
        (lambda x: routers.expert_choice_capacity(16, -1.0, 4), "capacity factor -1.0"),
    ],
)
def test_bad_settings_name_the_setting(call, message):
  with pytest.raises(ConfigError, match=message):
    call(jnp.zeros((2, 16, 4)))
