"""model_zoo/moe/growth.py against NumPy: which axis holds the experts, growing them (fresh or
copied), and where an upcycled MoE parameter comes from in a dense checkpoint."""

import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo.errors import ConfigError
from model_zoo.moe import growth


def test_the_expert_axis_of_kernels_and_routers():
  assert growth.expert_axis("decoder/layers/layer_1/moe/wi_0", 4) == 1  # [blocks, E, in, out]
  assert growth.expert_axis("decoder/layers_0/layer_1/moe/wo", 3) == 0  # unrolled [E, in, out]
  assert growth.expert_axis("decoder/layers/layer_1/moe/router/kernel", 3) == 2
  assert growth.expert_axis("decoder/layers/layer_0/mlp/wi_0/kernel", 3) is None


@pytest.mark.parametrize("how", ["fresh", "copy"])
def test_grow_keeps_the_old_experts_first(how):
  rng = np.random.default_rng(0)
  saved = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
  fresh = rng.normal(size=(2, 7, 4, 5)).astype(np.float32)
  got = np.asarray(growth.grow(jnp.asarray(saved), jnp.asarray(fresh), 1, how))
  assert got.shape == (2, 7, 4, 5)
  np.testing.assert_array_equal(got[:, :3], saved)
  want_new = saved[:, [3 % 3, 4 % 3, 5 % 3, 6 % 3]] if how == "copy" else fresh[:, 3:]
  np.testing.assert_array_equal(got[:, 3:], want_new)


def test_growth_reshapes_only_the_expert_axis():
  path = "decoder/layers/layer_1/moe/wi_0"
  assert growth.growth(path, (2, 3, 4, 5), (2, 6, 4, 5), "fresh") is not None
  assert growth.growth(path, (2, 3, 4, 5), (2, 6, 8, 5), "fresh") is None  # another width
  assert growth.growth("decoder/layers/mlp/wo/kernel", (2, 3), (2, 4), "fresh") is None
  with pytest.raises(ConfigError, match="may only add experts"):
    growth.growth(path, (2, 6, 4, 5), (2, 3, 4, 5), "fresh")


def test_new_router_columns_start_fresh_even_when_experts_are_copied():
  path = "decoder/layers/layer_1/moe/router/kernel"
  how = growth.growth(path, (2, 4, 3), (2, 4, 5), "copy")
  saved, fresh = np.ones((2, 4, 3)), np.full((2, 4, 5), 7.0)
  got = np.asarray(how(jnp.asarray(saved), jnp.asarray(fresh)))
  np.testing.assert_array_equal(got[..., :3], 1.0)
  np.testing.assert_array_equal(got[..., 3:], 7.0)


def test_upcycling_regroups_scanned_layers_into_blocks():
  """Dense layer l is block l // interval's layer l % interval; experts copy the FFN."""
  dense = np.arange(6 * 2 * 3, dtype=np.float32).reshape(6, 2, 3)  # 6 layers
  source, how = growth.upcycle_source("decoder/layers/layer_2/moe/wi_1", 3)
  assert source == "decoder/layers/mlp/wi_1/kernel"
  got = np.asarray(how(jnp.asarray(dense), jnp.zeros((2, 4, 2, 3))))  # 2 blocks, 4 experts
  for block in range(2):
    for e in range(4):
      np.testing.assert_array_equal(got[block, e], dense[block * 3 + 2])
  source, how = growth.upcycle_source("decoder/layers/layer_1/pre_mlp_norm/scale", 3)
  assert source == "decoder/layers/pre_mlp_norm/scale"
  norms = np.arange(6.0)[:, None] * np.ones((6, 2))
  np.testing.assert_array_equal(np.asarray(how(jnp.asarray(norms), None)), norms[[1, 4]])


def test_upcycling_unrolled_layers_and_the_rest():
  source, how = growth.upcycle_source("decoder/layers_1/layer_1/moe/wo", 2)
  assert source == "decoder/layers_3/mlp/wo/kernel"
  got = np.asarray(how(jnp.ones((3, 2)), jnp.zeros((4, 3, 2))))
  assert got.shape == (4, 3, 2) and got.min() == 1.0
  assert growth.upcycle_source("decoder/layers_1/layer_0/mlp/wo/kernel", 2) == (
      "decoder/layers_2/mlp/wo/kernel",
      None,
  )
  assert growth.upcycle_source("token_embedder/embedding", 2) == ("token_embedder/embedding", None)
  assert growth.upcycle_source("decoder/layers/layer_1/moe/router/kernel", 2) is None


def test_the_layer_interval_from_the_parameter_names():
  paths = ["decoder/layers/layer_0/mlp/wo/kernel", "decoder/layers/layer_2/moe/wo", "head/x"]
  assert growth.layer_interval(paths) == 3
  assert growth.layer_interval(["decoder/layers_4/layer_1/moe/wo"]) == 2
