"""Pipeline stages of a decoder-only LM: chained, they give the whole model's logits (scanned
or unrolled layers, tied or separate head, relative biases, MoE blocks), and the layers are
split into contiguous, balanced runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo import dense, pipeline_stages
from model_zoo.errors import ConfigError
from model_zoo.moe.config import MoeConfig
from tests.tiny import tiny_config

MOE = MoeConfig(num_experts=4, top_k=2, mlp_dim=16, group_size=8, eval_capacity_factor=2.0)


def test_stages_take_contiguous_balanced_runs_of_units():
  assert pipeline_stages.stage_ranges(tiny_config(num_layers=5), 3) == [(0, 2), (2, 4), (4, 5)]
  assert pipeline_stages.stage_ranges(tiny_config(num_layers=4), 1) == [(0, 4)]
  # MoE: the unit is a block of moe_layer_interval (2) layers.
  assert pipeline_stages.stage_ranges(tiny_config(num_layers=4, moe=MOE), 2) == [(0, 1), (1, 2)]
  with pytest.raises(ConfigError, match="3 pipeline stages for a model of 2 layer units"):
    pipeline_stages.stage_ranges(tiny_config(num_layers=4, moe=MOE), 3)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(num_layers=4),
        dict(num_layers=3, scan_layers=False),
        dict(num_layers=4, tie_embeddings=False, position_encoding="relative_bias"),
        dict(num_layers=4, moe=MOE),
    ],
    ids=["scanned", "unrolled", "untied-relative", "moe"],
)
def test_chained_stages_give_the_whole_models_logits(overrides):
  cfg = tiny_config(**overrides)
  lm = dense.DecoderOnlyLM(cfg)
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.integers(1, 64, (2, 8)), jnp.int32)
  targets = inputs.at[:, 6:].set(0)
  params = lm.init(jax.random.PRNGKey(0), inputs, targets)["params"]
  whole = lm.apply({"params": params}, inputs, targets)
  for num_stages in sorted({2, pipeline_stages.layer_units(cfg)}):
    x = inputs
    for k, stage in enumerate(pipeline_stages.stages(cfg, num_stages)):
      cut = pipeline_stages.stage_params(cfg, params, num_stages, k)
      x = stage.apply({"params": cut}, x, targets)
    np.testing.assert_allclose(x, whole, rtol=1e-6, atol=1e-6, err_msg=f"{num_stages} stages")


def test_each_layer_is_in_exactly_one_stage():
  cfg = tiny_config(num_layers=5)
  lm = dense.DecoderOnlyLM(cfg)
  tokens = jnp.ones((1, 4), jnp.int32)
  params = lm.init(jax.random.PRNGKey(0), tokens, tokens)["params"]
  kernels = [pipeline_stages.stage_params(cfg, params, 3, k)["decoder"]["layers"] for k in range(3)]
  first = lambda tree: jax.tree.leaves(tree)[0]
  np.testing.assert_array_equal(
      np.concatenate([first(k) for k in kernels]), first(params["decoder"]["layers"])
  )
