"""MoeBlock against NumPy (routing from numpy_routing.py, experts as plain matmuls), against the
dense MlpBlock when there is one expert, and its two dispatch paths against each other."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from model_zoo import aux_outputs
from model_zoo.errors import ConfigError
from model_zoo.layers import mlp
from model_zoo.moe import layer
from model_zoo.moe.config import MoeConfig
from tests.model_zoo import numpy_reference
from tests.model_zoo.moe import numpy_routing as ref

EMBED, HIDDEN = 6, 5


def _block(num_experts: int = 4, **kwargs) -> layer.MoeBlock:
  return layer.MoeBlock(MoeConfig(num_experts=num_experts, **kwargs), HIDDEN)


def _x(shape=(2, 8, EMBED), seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _init(block, x):
  """The parameters alone (init also sows the aux collections), unboxed."""
  return {"params": meta.unbox(block.init(jax.random.PRNGKey(1), x)["params"])}


def _silu(x):
  return x / (1.0 + np.exp(-x))


def _numpy_moe(params, x, group_size, k, capacity):
  """The einsum path's function in float64: route with the reference, run each kept choice
  through its expert's SwiGLU, add them up with their combine weights."""
  p = numpy_reference.unbox(params)["params"]
  groups = np.asarray(x, np.float64).reshape(-1, group_size, x.shape[-1])
  logits = groups @ p["router"]["kernel"]
  dispatch, combine = ref.top_k_routing(logits, k, capacity)
  out = np.zeros_like(groups)
  for g, s, e, c in zip(*np.nonzero(dispatch)):
    h = _silu(groups[g, s] @ p["wi_0"][e]) * (groups[g, s] @ p["wi_1"][e])
    out[g, s] += combine[g, s, e, c] * (h @ p["wo"][e])
  return out.reshape(x.shape), logits, dispatch


@pytest.mark.parametrize("k,factor", [(1, 0.5), (2, 0.5), (2, 1.0), (2, 4.0)])
def test_einsum_path_matches_numpy_with_drops(k, factor):
  block = _block(4, top_k=k, group_size=8, eval_capacity_factor=factor)
  x = _x()
  params = _init(block, x)
  got, sown = block.apply(params, x, mutable=[aux_outputs.AUX_LOSS, aux_outputs.AUX_METRICS])
  want, logits, dispatch = _numpy_moe(params, x, 8, k, ref.capacity(8, factor, k, 4))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)
  losses = aux_outputs.loss_terms(sown[aux_outputs.AUX_LOSS])
  np.testing.assert_allclose(
      float(losses["balance_loss"]), 0.01 * ref.load_balancing_loss(logits), rtol=1e-4
  )
  np.testing.assert_allclose(
      float(losses["router_z_loss"]), 1e-3 * ref.router_z_loss(logits), rtol=1e-4
  )
  metrics = aux_outputs.metric_values(sown[aux_outputs.AUX_METRICS])
  want_dropped = 1.0 - dispatch.sum(axis=(1, 2, 3)) / (8 * k)
  np.testing.assert_allclose(float(metrics["dropped_fraction"]), want_dropped.mean(), atol=1e-6)
  if factor < 1:
    assert float(metrics["dropped_fraction"]) > 0  # the case really drops


@pytest.mark.parametrize("dispatch", ["einsum", "dropless"])
def test_expert_load_is_each_experts_share_of_the_choices_when_asked(dispatch):
  x = _x((2, 16, EMBED), seed=4)
  mutable = [aux_outputs.AUX_METRICS, aux_outputs.AUX_METRIC_ITEMS]
  quiet = _block(4, group_size=8, dispatch=dispatch)
  params = _init(quiet, x)
  assert aux_outputs.AUX_METRIC_ITEMS not in quiet.apply(params, x, mutable=mutable)[1]
  block = _block(4, group_size=8, dispatch=dispatch, report_expert_load=True)
  _, sown = block.apply(params, x, mutable=mutable)
  got = aux_outputs.metric_items(sown[aux_outputs.AUX_METRIC_ITEMS])
  groups = np.asarray(x, np.float64).reshape(-1, 8, EMBED)
  chosen = np.argsort(-(groups @ numpy_reference.unbox(params)["params"]["router"]["kernel"]))
  counts = np.stack([np.bincount(g[:, :2].ravel(), minlength=4) for g in chosen])  # top-2
  load = (counts / 16).mean(axis=0)
  assert load.max() > 0.28  # not balanced: the shares differ
  np.testing.assert_allclose([float(got[f"expert_load/{e}"]) for e in range(4)], load, atol=1e-6)
  metrics = aux_outputs.metric_values(sown[aux_outputs.AUX_METRICS])
  np.testing.assert_allclose(
      float(metrics["max_expert_load"]), (counts / 16).max(axis=1).mean(), atol=1e-6
  )


@pytest.mark.parametrize("dispatch", ["einsum", "dropless"])
def test_one_expert_equals_the_dense_mlp(dispatch):
  """E = 1, top-1, room for every token: the gate is 1 and the block is the expert's MLP."""
  block = _block(1, top_k=1, group_size=4, dispatch=dispatch)
  x = _x()
  params = _init(block, x)
  p = params["params"]
  dense_params = {
      "params": {
          "wi_0": {"kernel": p["wi_0"][0]},
          "wi_1": {"kernel": p["wi_1"][0]},
          "wo": {"kernel": p["wo"][0]},
      }
  }
  want = mlp.MlpBlock(HIDDEN).apply(dense_params, x)
  got, _ = block.apply(params, x, mutable=[aux_outputs.AUX_LOSS, aux_outputs.AUX_METRICS])
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_einsum_and_dropless_agree_when_nothing_drops():
  """Outputs and every gradient (input, router, experts) of the two paths."""
  kwargs = dict(top_k=2, group_size=8, eval_capacity_factor=4.0)  # capacity = all 8 tokens
  einsum = _block(4, dispatch="einsum", **kwargs)
  dropless = _block(4, dispatch="dropless", **kwargs)
  x = _x(seed=3)
  params = _init(einsum, x)

  def loss(block, params, x):
    out, sown = block.apply(params, x, mutable=[aux_outputs.AUX_LOSS, aux_outputs.AUX_METRICS])
    aux = sum(aux_outputs.loss_terms(sown[aux_outputs.AUX_LOSS]).values())
    return jnp.sum(jnp.sin(out)) + aux

  for argnum in (0, 1):
    a = jax.grad(lambda p, x: loss(einsum, p, x), argnums=argnum)(params, x)
    b = jax.grad(lambda p, x: loss(dropless, p, x), argnums=argnum)(params, x)
    for (path, u), v in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(
          np.asarray(u), np.asarray(v), rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path)
      )
  np.testing.assert_allclose(
      float(loss(einsum, params, x)), float(loss(dropless, params, x)), rtol=1e-5
  )


def test_router_randomness_uses_the_router_stream_only_in_training():
  block = _block(4, group_size=8, second_expert_policy="random", jitter=0.1)
  x = _x()
  params = _init(block, x)
  mutable = [aux_outputs.AUX_LOSS, aux_outputs.AUX_METRICS]
  eval_a, _ = block.apply(params, x, mutable=mutable)  # deterministic: no rng needed
  eval_b, _ = block.apply(params, x, mutable=mutable)
  np.testing.assert_array_equal(np.asarray(eval_a), np.asarray(eval_b))
  train = lambda seed: block.apply(
      params,
      x,
      deterministic=False,
      rngs={layer.ROUTER_RNG: jax.random.PRNGKey(seed)},
      mutable=mutable,
  )[0]
  np.testing.assert_array_equal(np.asarray(train(0)), np.asarray(train(0)))
  assert not np.allclose(np.asarray(train(0)), np.asarray(train(1)))
  assert not np.allclose(np.asarray(train(0)), np.asarray(eval_a))


def test_expert_choice_block_runs_the_reference_routing():
  block = _block(4, router="expert_choice", group_size=8)
  x = _x(seed=5)
  params = _init(block, x)
  got, _ = block.apply(params, x, mutable=[aux_outputs.AUX_LOSS, aux_outputs.AUX_METRICS])
  p = numpy_reference.unbox(params)["params"]
  groups = np.asarray(x, np.float64).reshape(-1, 8, EMBED)
  dispatch, combine = ref.expert_choice_routing(groups @ p["router"]["kernel"], 4)
  want = np.zeros_like(groups)
  for g, s, e, c in zip(*np.nonzero(dispatch)):
    h = _silu(groups[g, s] @ p["wi_0"][e]) * (groups[g, s] @ p["wi_1"][e])
    want[g, s] += combine[g, s, e, c] * (h @ p["wo"][e])
  np.testing.assert_allclose(np.asarray(got), want.reshape(x.shape), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(dispatch="scatter"), "dispatch='scatter'"),
        (dict(router="hash"), "router='hash'"),
        (dict(router="expert_choice", dispatch="dropless"), "needs router 'top_k'"),
        (dict(top_k=5), "top_k=5"),
        (dict(eval_capacity_factor=0.0), "eval_capacity_factor=0.0"),
        (dict(second_expert_policy="sometimes"), "second_expert_policy='sometimes'"),
        (dict(group_size=0), "group_size=0"),
    ],
)
def test_bad_settings_name_the_setting(kwargs, message):
  with pytest.raises(ConfigError, match=message):
    MoeConfig(num_experts=4, **kwargs)


def test_a_group_size_that_does_not_divide_the_length_is_refused():
  with pytest.raises(ConfigError, match="group_size=5 does not divide the sequence length 8"):
    _init(_block(group_size=5), _x())


def test_groups_stay_within_a_sequence():
  """group_size above the length: each sequence is one group, so with drops (capacity 2 of 8
  tokens) a row's output is the same alone as beside others, and equals NumPy's."""
  block = _block(4, top_k=2, group_size=1024, eval_capacity_factor=0.5)
  x = _x((3, 8, EMBED), seed=7)
  params = _init(block, x)
  together = np.asarray(block.apply(params, x))
  alone = np.asarray(block.apply(params, x[1:2]))
  np.testing.assert_allclose(together[1:2], alone, rtol=1e-6, atol=1e-6)
  want, _, dispatch = _numpy_moe(params, x, group_size=8, k=2, capacity=2)
  np.testing.assert_allclose(together, want, rtol=1e-4, atol=1e-5)
  assert dispatch.sum() < 3 * 8 * 2  # some choices really are dropped


@pytest.mark.parametrize("dispatch", ["einsum", "dropless"])
def test_dropout_on_the_experts_hidden_only_in_training(dispatch):
  """Rate 1 silences every expert (the hidden is dropped, not the routing), rate 0.5 changes
  the output with the "dropout" stream, and eval ignores both."""
  x = _x()
  mutable = [aux_outputs.AUX_LOSS, aux_outputs.AUX_METRICS]
  outs = {}
  for rate in (0.0, 0.5, 1.0):
    block = layer.MoeBlock(MoeConfig(4, group_size=8, dispatch=dispatch), HIDDEN, dropout_rate=rate)
    params = _init(block, x)
    evaluated, _ = block.apply(params, x, mutable=mutable)
    trained, _ = block.apply(
        params, x, False, rngs={"dropout": jax.random.PRNGKey(3)}, mutable=mutable
    )
    outs[rate] = np.asarray(evaluated), np.asarray(trained)
  for evaluated, _ in outs.values():
    np.testing.assert_array_equal(evaluated, outs[0.0][0])
  np.testing.assert_array_equal(outs[0.0][1], outs[0.0][0])
  assert np.abs(outs[0.5][1] - outs[0.0][0]).max() > 1e-3
  np.testing.assert_array_equal(outs[1.0][1], np.zeros_like(x))


def test_activated_expert_fraction():
  assert MoeConfig(8, top_k=2).activated_expert_fraction == 2 / 8
  # Expert choice: each expert takes capacity_factor / E of the tokens.
  config = MoeConfig(8, router="expert_choice", train_capacity_factor=1.5)
  assert config.activated_expert_fraction == 1.5 / 8
