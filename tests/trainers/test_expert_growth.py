"""Expert growth and sparse upcycling through InitialCheckpoint: a MoE checkpoint fills a model
with more experts (old experts and router columns as saved, new ones fresh or copied); a
dense checkpoint starts a MoE model that computes the dense model's function."""

import dataclasses
import os

import jax
import numpy as np
import pytest
from flax import traverse_util

from model_zoo.errors import ConfigError
from model_zoo.moe.config import MoeConfig
from tests.trainers import helpers
from trainers import checkpoints
from trainers.initial_checkpoint import InitialCheckpoint

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MOE = MoeConfig(num_experts=2, top_k=2, mlp_dim=64, group_size=16, eval_capacity_factor=4.0)
EXPERTS = "decoder/layers/layer_1/moe/wi_0"
ROUTER = "decoder/layers/layer_1/moe/router/kernel"


def _flat(tree) -> dict[str, np.ndarray]:
  return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def _trained(tmp_path_factory, name: str, model):
  """A MODEL_DIR whose checkpoint holds `model` after 2 steps, and those parameters."""
  model_dir = tmp_path_factory.mktemp(name)
  tr = helpers.make_trainer(num_devices=1, model=model)
  state, _ = helpers.train_losses(tr, 2)
  ckpt = checkpoints.Checkpointer(str(model_dir / "checkpoints"))
  ckpt.save(state, {"train_batches": 2})
  ckpt.close()
  return str(model_dir), _flat(jax.device_get(state.params))


@pytest.fixture(scope="module")
def moe_run(tmp_path_factory):
  return _trained(tmp_path_factory, "moe2", helpers.tiny_model(moe=MOE))


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
  return _trained(tmp_path_factory, "dense", helpers.tiny_model())


@pytest.fixture(scope="module")
def unrolled_dense_run(tmp_path_factory):
  return _trained(tmp_path_factory, "dense_unrolled", helpers.tiny_model(scan_layers=False))


def _start(tmp_path, initial, **model_overrides):
  state = helpers.finetune_start(
      initial, os.path.join(tmp_path, "run"), helpers.tiny_model(**model_overrides)
  )
  return _flat(jax.device_get(state.params))


def _fresh(**model_overrides):
  tr = helpers.make_trainer(num_devices=1, model=helpers.tiny_model(**model_overrides))
  return _flat(jax.device_get(tr.init_state(helpers.shapes_of(helpers.synthetic_batch(0))).params))


@pytest.mark.slow
@pytest.mark.parametrize("new_experts", ["fresh", "copy"])
def test_growth_keeps_the_old_experts_and_router_columns(moe_run, tmp_path, new_experts, capfd):
  model_dir, saved = moe_run
  grown_moe = dataclasses.replace(MOE, num_experts=5)
  got = _start(tmp_path, InitialCheckpoint(model_dir, new_experts=new_experts), moe=grown_moe)
  fresh = _fresh(moe=grown_moe)
  experts, router = got[EXPERTS], got[ROUTER]  # [blocks, E, embed, mlp], [blocks, embed, E]
  assert experts.shape[1] == 5 and router.shape[-1] == 5
  np.testing.assert_array_equal(experts[:, :2], saved[EXPERTS])
  np.testing.assert_array_equal(router[..., :2], saved[ROUTER])
  np.testing.assert_array_equal(router[..., 2:], fresh[ROUTER][..., 2:])  # new columns fresh
  if new_experts == "copy":  # new expert j copies old expert j mod 2
    for j in range(2, 5):
      np.testing.assert_array_equal(experts[:, j], saved[EXPERTS][:, j % 2])
  else:
    np.testing.assert_array_equal(experts[:, 2:], fresh[EXPERTS][:, 2:])
  for path, value in saved.items():  # everything else loaded as saved
    if "/moe/" not in path:
      np.testing.assert_array_equal(got[path], value, err_msg=path)
  assert "4 reshaped" in capfd.readouterr().out  # wi_0, wi_1, wo, router


def test_growth_must_be_asked_for_and_may_not_shrink(moe_run, tmp_path):
  model_dir, _ = moe_run
  more = dataclasses.replace(MOE, num_experts=4)
  with pytest.raises(ConfigError, match=r"2 experts and the model 4\. Set InitialCheckpoint.new"):
    _start(tmp_path, InitialCheckpoint(model_dir), moe=more)
  fewer = dataclasses.replace(MOE, num_experts=1, top_k=1)
  with pytest.raises(ConfigError, match="a growth phase may only add experts"):
    _start(tmp_path, InitialCheckpoint(model_dir, new_experts="fresh"), moe=fewer)
  with pytest.raises(ConfigError, match=r"new_experts='clone'; expected one of \['fresh', 'c"):
    _start(tmp_path, InitialCheckpoint(model_dir, new_experts="clone"), moe=more)


def test_an_unrelated_checkpoint_names_the_mismatching_parameter(moe_run, tmp_path):
  model_dir, _ = moe_run
  wider = dataclasses.replace(MOE, num_experts=4)
  with pytest.raises(ConfigError, match=r"Parameter decoder/layers/layer_0/\S+: the checkpoint's"):
    _start(tmp_path, InitialCheckpoint(model_dir, new_experts="fresh"), moe=wider, emb_dim=48)


@pytest.mark.slow
@pytest.mark.parametrize("scan", [True, False])
def test_an_upcycled_model_computes_the_dense_models_function(request, tmp_path, scan):
  """Top-2 with renormalised weights and room for every token: sum_k w_k FFN(x) = FFN(x)."""
  model_dir, saved = request.getfixturevalue("dense_run" if scan else "unrolled_dense_run")
  got = _start(tmp_path, InitialCheckpoint(model_dir, upcycle=True), moe=MOE, scan_layers=scan)
  batch = helpers.synthetic_batch(5)
  want = _logits(helpers.tiny_model(scan_layers=scan), saved, batch)
  have = _logits(helpers.tiny_model(moe=MOE, scan_layers=scan), got, batch)
  np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-5)
  routers = [p for p in got if p.endswith("router/kernel")]
  assert routers and all(np.any(got[p] != 0) for p in routers)


def _logits(model, flat_params, batch):
  params = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat_params.items()})
  tokens = batch["decoder_input_tokens"], batch["decoder_target_tokens"]
  return np.asarray(model.module.apply({"params": params}, *tokens))


def test_the_upcycled_experts_are_copies_of_their_layers_ffn(dense_run, tmp_path):
  model_dir, saved = dense_run
  got = _start(tmp_path, InitialCheckpoint(model_dir, upcycle=True), moe=MOE)
  dense_wi = saved["decoder/layers/mlp/wi_0/kernel"]  # [layers 2, embed, mlp]
  np.testing.assert_array_equal(got["decoder/layers/layer_0/mlp/wi_0/kernel"][0], dense_wi[0])
  for e in range(2):
    np.testing.assert_array_equal(got[EXPERTS][0, e], dense_wi[1])  # block 0's layer 1


def test_upcycling_is_asked_for_and_needs_the_dense_width(dense_run, moe_run, tmp_path):
  model_dir, _ = dense_run
  with pytest.raises(ConfigError, match="set InitialCheckpoint.upcycle = True"):
    _start(tmp_path, InitialCheckpoint(model_dir), moe=MOE)
  narrow = dataclasses.replace(MOE, mlp_dim=32)
  with pytest.raises(ConfigError, match=r"cannot be reshaped .*MoeConfig.mlp_dim"):
    _start(tmp_path, InitialCheckpoint(model_dir, upcycle=True), moe=narrow)
  with pytest.raises(ConfigError, match="upcycle=True, but .* is not a dense model's"):
    _start(tmp_path, InitialCheckpoint(moe_run[0], upcycle=True), moe=MOE)
