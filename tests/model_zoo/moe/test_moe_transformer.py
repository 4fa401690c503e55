"""MoE layers in the zoo's transformer: every moe_layer_interval-th layer's FFN is a MoeBlock,
the stack scans [dense, ..., moe] blocks, scanned equals unrolled, the Model's loss gets the
router losses."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from model_zoo import dense, models
from model_zoo import metrics as metrics_lib
from model_zoo.config import TransformerConfig
from model_zoo.errors import ConfigError
from model_zoo.moe.config import MoeConfig
from tests.model_zoo import tiny_lm
from tests.tiny import tiny_config

MOE = MoeConfig(num_experts=4, top_k=2, mlp_dim=16, group_size=8, eval_capacity_factor=1.0)


def _config(**overrides) -> TransformerConfig:
  return tiny_config(**{"num_layers": 4, "moe": MOE, **overrides})


def _tokens(seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(1, 64, size=(2, 8)), jnp.int32)


def _batch(tokens):
  """A batch that predicts each token from itself (the loss only needs to be computed)."""
  return {
      "decoder_input_tokens": tokens,
      "decoder_target_tokens": tokens,
      "decoder_loss_weights": jnp.ones_like(tokens),
  }


def _init(cfg):
  module = dense.DecoderOnlyLM(cfg)
  tokens = _tokens()
  return module, meta.unbox(module.init(jax.random.PRNGKey(0), tokens, tokens)["params"])


def test_every_second_layer_is_moe_and_the_stack_scans_blocks():
  _, params = _init(_config())
  blocks = params["decoder"]["layers"]
  assert set(blocks) == {"layer_0", "layer_1"}
  assert "mlp" in blocks["layer_0"] and "moe" not in blocks["layer_0"]
  assert "moe" in blocks["layer_1"] and "mlp" not in blocks["layer_1"]
  # [blocks, experts, embed, expert mlp] and [blocks, embed, experts] (the router)
  assert blocks["layer_1"]["moe"]["wi_0"].shape == (2, 4, 32, 16)
  assert blocks["layer_1"]["moe"]["router"]["kernel"].shape == (2, 32, 4)


def test_scanned_blocks_equal_the_unrolled_stack():
  """Logits and the sown router losses, with drops (eval capacity factor 1.0)."""
  tokens = _tokens(1)
  scanned, params = _init(_config())
  unrolled = dense.DecoderOnlyLM(_config(scan_layers=False))
  unrolled_params = tiny_lm.unstack_layers(params, 2)

  def run(module, p):
    return module.apply({"params": p}, tokens, tokens, mutable=["aux_loss"])

  (a, aux_a), (b, aux_b) = run(scanned, params), run(unrolled, unrolled_params)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
  total = lambda aux: sum(float(jnp.sum(x)) for x in jax.tree.leaves(aux))
  np.testing.assert_allclose(total(aux_a), total(aux_b), rtol=1e-5)
  assert len(jax.tree.leaves(aux_b)) == 4  # two MoE layers, two losses each


def test_the_model_loss_includes_the_weighted_router_losses():
  model = models.DecoderOnlyModel(dense.DecoderOnlyLM(_config()), z_loss=0.0)
  _, params = _init(_config())
  batch = _batch(_tokens(2))
  loss, metrics = model.loss_fn(params, batch)
  values = metrics_lib.values(metrics)
  balance = [v for k, v in values.items() if k.startswith("aux/") and "balance_loss" in k]
  router_z = [v for k, v in values.items() if k.startswith("aux/") and "router_z_loss" in k]
  assert balance and router_z
  # the balance loss is >= 1 per layer (1 when uniform), times weight 0.01, two layers
  assert sum(balance) >= 2 * 0.01 * 0.999
  np.testing.assert_allclose(float(loss), values["loss"] + sum(balance) + sum(router_z), rtol=1e-5)


def test_expert_load_per_block_and_expert_only_when_asked():
  """The scanned stack reports E x blocks loads, each block's summing to 1, and the loss and
  the other metrics stay as they were."""
  _, params = _init(_config())
  batch = _batch(_tokens(3))
  results = {}
  for report in (False, True):
    cfg = _config(moe=dataclasses.replace(MOE, report_expert_load=report))
    loss, metrics = models.DecoderOnlyModel(dense.DecoderOnlyLM(cfg)).loss_fn(params, batch)
    results[report] = float(loss), metrics_lib.values(metrics)
  prefix = "metrics/decoder/layers/layer_1/moe/expert_load"
  items = {k: v for k, v in results[True][1].items() if k.startswith(prefix)}
  assert set(items) == {f"{prefix}/{block}/{e}" for block in range(2) for e in range(4)}
  for block in range(2):
    assert sum(items[f"{prefix}/{block}/{e}"] for e in range(4)) == pytest.approx(1.0)
  assert results[True][0] == results[False][0]
  assert {k: v for k, v in results[True][1].items() if k not in items} == results[False][1]


def test_a_layer_count_that_is_not_a_multiple_of_the_interval_is_refused():
  with pytest.raises(ConfigError, match="MoeConfig.moe_layer_interval=2"):
    _init(dataclasses.replace(_config(), num_layers=3))


@pytest.mark.slow
@pytest.mark.parametrize(
    "dispatch,factor,same",
    [
        ("dropless", 1.0, True),  # nothing is ever dropped
        pytest.param("einsum", 8.0, True, marks=pytest.mark.slow),  # room for every token
        # the full forward drops choices that one-token steps keep
        pytest.param("einsum", 0.5, False, marks=pytest.mark.slow),
    ],
)
def test_cached_decoding_equals_the_full_forward_when_nothing_drops(dispatch, factor, same):
  moe = dataclasses.replace(MOE, dispatch=dispatch, eval_capacity_factor=factor)
  module, params = _init(_config(moe=moe))
  tokens = _tokens(3)
  full = np.asarray(module.apply({"params": params}, tokens, tokens))
  cached = tiny_lm.decode_token_by_token(module, params, tokens)
  assert np.allclose(cached, full, rtol=1e-5, atol=1e-5) == same


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["dots_no_batch", pytest.param("full", marks=pytest.mark.slow)])
def test_remat_policies_apply_to_moe_blocks_and_change_nothing(policy):
  """Logits and gradients (the router losses included) equal remat "none"."""
  tokens = _tokens(4)

  def value_and_grad(cfg):
    module, params = _init(cfg)

    def loss(p):
      logits, sown = module.apply({"params": p}, tokens, tokens, mutable=["aux_loss"])
      aux = sum(jnp.sum(x) for x in jax.tree.leaves(sown))
      return jnp.sum(jax.nn.log_softmax(logits)[..., 0]) + aux

    return jax.value_and_grad(loss)(params)

  base_loss, base_grads = value_and_grad(_config())
  loss, grads = value_and_grad(_config(remat_policy=policy))
  np.testing.assert_allclose(float(loss), float(base_loss), rtol=1e-6)
  for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(base_grads), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
