"""Brainformer: a block built from layer specs equals the same sub-layers composed by hand,
scanned blocks equal unrolled ones, the shipped recipe, bad specs named, and the activated
parameter count the equal-size comparisons use."""

import dataclasses

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from model_zoo import brainformer, dense, layer_spec, models
from model_zoo.errors import ConfigError
from model_zoo.layers import attention, masks, mlp, norms
from model_zoo.moe import layer as moe_layer
from model_zoo.moe.config import MoeConfig
from tests.model_zoo import tiny_lm
from tests.tiny import tiny_config

MOE = MoeConfig(num_experts=4, top_k=2, mlp_dim=16, group_size=8, eval_capacity_factor=2.0)
BLOCK = [
    "attention",
    {"kind": "moe", "router": "expert_choice", "capacity_factor": 1.0},
    {"kind": "ffn", "mlp_dim": 24},
    {"kind": "moe", "mlp_dim": 8, "capacity_factor": 0.5},  # top-2, with drops
    {"kind": "attention", "norm": "none"},
]


def _config(**overrides):
  return tiny_config(**{"num_layers": 2, "moe": MOE, "block": BLOCK, **overrides})


def _tokens(seed=0, length=8):
  return jnp.asarray(np.random.default_rng(seed).integers(1, 64, size=(2, length)), jnp.int32)


def _init(cfg):
  module = dense.DecoderOnlyLM(cfg)
  tokens = _tokens()
  return module, meta.unbox(module.init(jax.random.PRNGKey(0), tokens, tokens)["params"])


def _by_hand(cfg, params, x, mask, positions):
  """The block's sub-layers in order, each x + f(norm(x)), from the layer modules themselves
  and MoeConfigs written out here (not from the specs)."""
  f32 = dict(dtype=jnp.float32, param_dtype=jnp.float32)
  attn = attention.Attention(
      num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, **f32
  )
  layers = [
      lambda p, h: attn.apply(
          {"params": p["attention"]}, h, h, mask, q_positions=positions, kv_positions=positions
      ),
      lambda p, h: moe_layer.MoeBlock(
          dataclasses.replace(MOE, router="expert_choice", eval_capacity_factor=1.0), 16, **f32
      ).apply({"params": p["moe"]}, h),
      lambda p, h: mlp.MlpBlock(24, **f32).apply({"params": p["mlp"]}, h),
      lambda p, h: moe_layer.MoeBlock(
          dataclasses.replace(MOE, eval_capacity_factor=0.5), 8, **f32
      ).apply({"params": p["moe"]}, h),
      lambda p, h: attn.apply(
          {"params": p["attention"]}, h, h, mask, q_positions=positions, kv_positions=positions
      ),
  ]
  for i, layer in enumerate(layers):
    p = params[f"sublayer_{i}"]
    h = x if i == 4 else norms.RMSNorm().apply({"params": p["norm"]}, x)
    x = x + layer(p, h)
  return x


def test_a_block_from_specs_equals_its_sublayers_composed_by_hand():
  cfg = _config(num_layers=1, scan_layers=False)
  _, params = _init(cfg)
  block = params["decoder"]["layers_0"]
  assert sorted(block) == [f"sublayer_{i}" for i in range(5)]
  assert "norm" not in block["sublayer_4"]
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, cfg.emb_dim))
  positions = jnp.broadcast_to(jnp.arange(8), (2, 8))
  mask = masks.decoder_self_attention_mask(jnp.ones((2, 8), jnp.int32))
  got, _ = brainformer.SpecBlock(cfg).apply({"params": block}, x, mask, positions)
  want = _by_hand(cfg, block, x, mask, positions)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_each_sublayer_has_its_own_widths():
  _, params = _init(_config())
  block = params["decoder"]["layers"]  # scanned: a leading axis of 2 blocks
  assert block["sublayer_1"]["moe"]["wi_0"].shape == (2, 4, 32, 16)  # MoeConfig.mlp_dim
  assert block["sublayer_2"]["mlp"]["wi_0"]["kernel"].shape == (2, 32, 24)
  assert block["sublayer_3"]["moe"]["wo"].shape == (2, 4, 8, 32)


def test_scanned_blocks_equal_unrolled_blocks():
  """Logits and the sown router losses."""
  tokens = _tokens(1)
  scanned, params = _init(_config())
  unrolled = dense.DecoderOnlyLM(_config(scan_layers=False))

  def run(module, p):
    return module.apply({"params": p}, tokens, tokens, mutable=["aux_loss"])

  (a, aux_a), (b, aux_b) = run(scanned, params), run(unrolled, tiny_lm.unstack_layers(params, 2))
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
  total = lambda aux: sum(float(jnp.sum(x)) for x in jax.tree.leaves(aux))
  np.testing.assert_allclose(total(aux_a), total(aux_b), rtol=1e-5)
  assert len(jax.tree.leaves(aux_b)) == 2 * 2 * 2  # blocks x MoE sub-layers x two losses


@pytest.mark.slow
def test_cached_decoding_equals_the_full_forward_with_token_choice_and_room():
  """The KV caches of a block's attention sub-layers work like the dense model's. (Expert
  choice is left out: it ranks a group's tokens, so one-token steps route differently.)"""
  block = ["attention", {"kind": "moe", "capacity_factor": 8.0}, "ffn", "attention"]
  module, params = _init(_config(block=block))
  tokens = _tokens(3)
  full = np.asarray(module.apply({"params": params}, tokens, tokens))
  np.testing.assert_allclose(
      tiny_lm.decode_token_by_token(module, params, tokens), full, rtol=1e-5, atol=1e-5
  )


@pytest.mark.slow
def test_the_model_trains_a_block_with_its_router_losses():
  model = models.DecoderOnlyModel(dense.DecoderOnlyLM(_config()), z_loss=0.0)
  _, params = _init(_config())
  tokens = _tokens(2)
  batch = {
      "decoder_input_tokens": tokens,
      "decoder_target_tokens": tokens,
      "decoder_loss_weights": jnp.ones_like(tokens),
  }
  grads = jax.grad(lambda p: model.loss_fn(p, batch)[0])(params)
  router = grads["decoder"]["layers"]["sublayer_3"]["moe"]["router"]["kernel"]
  assert float(jnp.abs(router).sum()) > 0


def test_the_shipped_recipe():
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings(["gin/models/brainformer_tiny.gin"], [])
    cfg = dense.TransformerConfig()
  finally:
    gin.clear_config()
  kinds = [spec.kind for spec in cfg.block]
  assert len(kinds) == 8
  assert (kinds.count("attention"), kinds.count("moe"), kinds.count("ffn")) == (2, 3, 3)
  moes = layer_spec.moe_configs(cfg.block, cfg.moe).values()
  assert {(m.router, m.train_capacity_factor, m.eval_capacity_factor) for m in moes} == {
      ("expert_choice", 1.0, 1.0)
  }
  assert cfg.num_attention_layers == 2 * cfg.num_layers


def test_activated_fraction_counts_each_moe_sublayer_by_its_own_router():
  cfg = _config()
  frac = lambda *keys: dense.activated_fraction(cfg, keys)
  assert frac("decoder", "layers", "sublayer_1", "moe", "wi_0") == 1.0 / 4  # expert choice, cf 1
  assert frac("decoder", "layers", "sublayer_3", "moe", "wo") == 2 / 4  # top-2 of 4
  assert frac("decoder", "layers", "sublayer_3", "moe", "router", "kernel") == 1.0
  assert frac("decoder", "layers", "sublayer_2", "mlp", "wo", "kernel") == 1.0
  glam = tiny_config(moe=MOE, num_layers=4)
  assert dense.activated_fraction(glam, ("decoder", "layers", "layer_1", "moe", "wo")) == 0.5


def test_specs_round_trip_through_their_dicts():
  specs = layer_spec.parse_block(BLOCK)
  assert specs[0] == layer_spec.LayerSpec("attention")
  assert [s.as_dict() for s in specs][1:] == BLOCK[1:]
  assert layer_spec.parse_block([s.as_dict() for s in specs]) == specs
  assert _config().block == specs  # a config keeps them as hashable specs
  hash(_config())


@pytest.mark.parametrize(
    "block,message",
    [
        (["attention", "conv"], r"block\[1\]: unknown layer kind 'conv'"),
        ([{"kind": "ffn", "router": "top_k"}], r"block\[0\]: a 'ffn' sub-layer has no setting"),
        ([{"kind": "attention", "mlp_dim": 8}], r"a 'attention' sub-layer has no setting"),
        ([{"kind": "ffn", "mlp_dim": 0}], r"block\[0\]: mlp_dim=0 must be >= 1"),
        ([{"kind": "ffn", "norm": "layer"}], r"block\[0\]: norm='layer'"),
        ([], "must be a non-empty list"),
        ("attention", "must be a non-empty list"),
        ([{"kind": "moe", "router": "soft"}], r"block\[0\]: MoeConfig.router='soft'"),
        ([{"kind": "moe", "capacity_factor": 0.0}], r"block\[0\]: MoeConfig.train_capacity"),
    ],
)
def test_bad_blocks_name_the_sublayer_and_the_setting(block, message):
  with pytest.raises(ConfigError, match=message):
    _config(block=block)


def test_a_moe_sublayer_needs_the_models_moe_config():
  with pytest.raises(ConfigError, match=r"block\[1\] is a 'moe' sub-layer but .*moe is None"):
    _config(moe=None, block=["attention", "moe"])


def test_an_encoder_decoder_refuses_a_block():
  module = dense.EncoderDecoder(_config())
  tokens = _tokens()
  with pytest.raises(ConfigError, match="TransformerConfig.block .* builds decoder-only"):
    module.init(jax.random.PRNGKey(0), tokens, tokens, tokens)
