"""A model placed on a device group in pipeline stages, each tensor-sharded (8 fake CPU
devices): its scores equal Model.score_batch, each device holds its share of the weights, and
the profiler measures every stage of every shape."""

import jax
import numpy as np
import pytest

from model_zoo import dense, models
from model_zoo.errors import ConfigError
from tests.tiny import tiny_config
from trainers.serving import profiler, profiles
from trainers.serving.profiles import ParallelConfig
from trainers.serving.staged import StagedModel

CFG = tiny_config(num_layers=4)


@pytest.fixture(scope="module")
def model_and_params():
  model = models.DecoderOnlyModel(dense.DecoderOnlyLM(CFG))
  rng = np.random.default_rng(0)
  inputs = rng.integers(1, 64, (4, 8)).astype(np.int32)
  targets = rng.integers(1, 64, (4, 8)).astype(np.int32)
  targets[:, 6:] = 0
  batch = {"decoder_input_tokens": inputs, "decoder_target_tokens": targets}
  return model, model.init(jax.random.PRNGKey(0), batch), batch


def param_bytes(tree) -> int:
  return sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (4, 2), (1, 4)])
def test_staged_scores_equal_the_models(model_and_params, shape):
  model, params, batch = model_and_params
  config = ParallelConfig(*shape)
  staged = StagedModel(CFG, params, config, jax.devices()[: config.devices])
  expected = np.asarray(model.score_batch(params, batch))
  got = staged.score(batch["decoder_input_tokens"], batch["decoder_target_tokens"])
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  assert len(staged.memory_per_device()) == config.devices


def test_each_device_holds_its_stage_and_its_shard(model_and_params):
  _, params, _ = model_and_params
  whole = param_bytes(params)
  embedding = param_bytes(params["token_embedder"])
  one = StagedModel(CFG, params, ParallelConfig(1, 1), jax.devices()[:1]).memory_per_device()
  assert list(one.values()) == [whole]
  # Two stages: the layers split between the devices; the tied head's embedding on both.
  two = StagedModel(CFG, params, ParallelConfig(2, 1), jax.devices()[:2]).memory_per_device()
  assert sum(two.values()) == whole + embedding
  # Tensor shards: each device holds less than the whole, all of them together more (the
  # norms and what the tensor axis does not divide are replicated).
  sharded = StagedModel(CFG, params, ParallelConfig(1, 2), jax.devices()[:2]).memory_per_device()
  assert all(v < whole for v in sharded.values()) and sum(sharded.values()) > whole


def test_a_group_given_the_wrong_number_of_devices_is_refused(model_and_params):
  _, params, _ = model_and_params
  with pytest.raises(ConfigError, match=r"a 2x2 group needs 4 devices .* given 3"):
    StagedModel(CFG, params, ParallelConfig(2, 2), jax.devices()[:3])


def test_the_profiler_measures_each_stage_of_each_shape_and_round_trips(model_and_params, tmp_path):
  _, params, _ = model_and_params
  configs = [ParallelConfig(1, 1), ParallelConfig(2, 1)]
  measured = profiler.profile_model(
      "tiny", CFG, params, configs, batch_sizes=[1, 4], length=8, devices=jax.devices(), repeats=2
  )
  for config in configs:
    on = measured.on(config)
    assert sorted(on.stage_latency_s) == [1, 4]
    assert all(len(s) == config.stages and min(s) > 0 for s in on.stage_latency_s.values())
  one, two = (measured.on(c).memory_per_device for c in configs)
  assert one == param_bytes(params) and two < one
  profiles.save([measured], tmp_path / "p.jsonl")
  assert profiles.load(tmp_path / "p.jsonl") == {"tiny": measured}
  with pytest.raises(ConfigError, match=r"\['4x4'\] need more than the 8 devices"):
    profiler.profile_model("tiny", CFG, params, [ParallelConfig(4, 4)], [1], 8, jax.devices())
