"""A MoE model on 8 fake CPU devices with the experts sharded over the mesh's `expert` axis
trains exactly as on one device (10 steps, loss curves to 1e-5), the expert kernels really
are split over that axis, the batch over it too, and the tokens reach their experts by
all-to-alls (no gathers)."""

import collections
import re

import numpy as np
import pytest

from model_zoo import dense, models
from model_zoo.errors import ConfigError
from model_zoo.moe.config import MoeConfig
from tests.tiny import tiny_config
from tests.trainers import helpers

MOE = MoeConfig(num_experts=8, top_k=2, mlp_dim=16, group_size=32, eval_capacity_factor=2.0)


def _model(dispatch: str = "einsum"):
  cfg = tiny_config(moe=MoeConfig(**{**MOE.__dict__, "dispatch": dispatch}))
  return models.DecoderOnlyModel(dense.DecoderOnlyLM(cfg))


def _losses_and_state(mesh_shape, num_devices, dispatch="einsum"):
  tr = helpers.make_trainer(mesh_shape=mesh_shape, num_devices=num_devices, model=_model(dispatch))
  state = tr.init_state(helpers.shapes_of(helpers.synthetic_batch(0)))
  losses = []
  for i in range(10):
    state, metrics = tr.train_step(state, helpers.synthetic_batch(i))
    losses.append(float(metrics["loss"].value()))
  return np.array(losses), state


@pytest.mark.slow
@pytest.mark.parametrize(
    "mesh_shape", [(2, 1, 1, 4), pytest.param((1, 1, 1, 8), marks=pytest.mark.slow)]
)
def test_expert_parallel_training_equals_one_device(mesh_shape):
  single, _ = _losses_and_state((1, 1, 1, 1), 1)
  sharded, state = _losses_and_state(mesh_shape, 8)
  np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-6)
  assert single[-1] < single[0]
  kernel = state.params["decoder"]["layers"]["layer_1"]["moe"]["wi_0"]
  spec = kernel.sharding.spec
  assert spec[1] == "expert", spec  # [blocks, experts, embed, mlp]: experts over `expert`
  shard_experts = {s.data.shape[1] for s in kernel.addressable_shards}
  assert shard_experts == {8 // mesh_shape[3]}


def _collectives(tr, state, batch) -> collections.Counter:
  hlo = tr.lower_train_step(state, batch).compile().as_text()
  return collections.Counter(
      re.findall(r" (all-to-all|all-gather|reduce-scatter|collective-permute)(?:-start)?\(", hlo)
  )


def test_tokens_reach_their_experts_by_all_to_all():
  """data 2 x expert 4: the dense layers are data-parallel over all 8 devices, and the one MoE
  layer's dispatch and combine are each one all-to-all, forward and backward; nothing is
  gathered (the parameters outside the experts are replicated, the experts stay put)."""
  tr = helpers.make_trainer(mesh_shape=(2, 1, 1, 4), num_devices=8, model=_model())
  batch = helpers.synthetic_batch(0)
  assert tr._batch_shardings(batch)["decoder_input_tokens"].spec[0] == ("data", "fsdp", "expert")
  state = tr.init_state(helpers.shapes_of(batch))
  state, _ = tr.train_step(state, batch)
  assert _collectives(tr, state, batch) == {"all-to-all": 4}


@pytest.mark.parametrize("block", [None, ["attention", {"kind": "moe", "router": "expert_choice"}]])
def test_experts_that_the_expert_axis_does_not_divide_are_refused(block):
  """In GLaM's MoE layers and in a Brainformer block's MoE sub-layers alike."""
  cfg = tiny_config(moe=MoeConfig(num_experts=6, group_size=32), block=block)
  model = models.DecoderOnlyModel(dense.DecoderOnlyLM(cfg))
  tr = helpers.make_trainer(mesh_shape=(2, 1, 1, 4), num_devices=8, model=model)
  with pytest.raises(
      ConfigError, match=r"MoeConfig.num_experts=6 is not a multiple .* \(4 devices"
  ):
    tr.init_state(helpers.shapes_of(helpers.synthetic_batch(0)))
