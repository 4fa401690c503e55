"""Generation through pipeline stages, each keeping its own layers' KV cache on its own
devices (8 fake CPU devices): the tokens and scores equal Model.predict_batch's with the same
decoder and random key, for every stage count, tensor sharding and layer layout."""

import jax
import numpy as np
import pytest

from model_zoo import dense, models
from model_zoo.config import MoeConfig
from model_zoo.decoding.sampling import Sampling, greedy
from tests.tiny import tiny_config
from trainers.serving.profiles import ParallelConfig
from trainers.serving.staged import StagedModel
from trainers.serving.staged_decoding import StagedDecoder

LENGTH = 12
# Prompts of different lengths, one of them empty (decoding starts from BOS) and one that
# leaves a single token of room.
PROMPTS = [[5, 9, 3], [7], [], [4, 4, 8, 2, 6, 1, 3, 9, 2, 5, 7]]


def build(cfg):
  model = models.DecoderOnlyModel(dense.DecoderOnlyLM(cfg))
  batch = model.prompt_batch(PROMPTS, len(PROMPTS), LENGTH)
  params = model.init(jax.random.PRNGKey(1), batch)
  return model, params, batch


@pytest.fixture(scope="module")
def scanned():
  return build(tiny_config(num_layers=4))


def staged_decode(cfg, model, params, batch, shape, decoder, rng):
  config = ParallelConfig(*shape)
  staged = StagedModel(cfg, params, config, jax.devices()[: config.devices])
  run = StagedDecoder(staged, decoder, model.eos_id, LENGTH)
  return run(batch["decoder_input_tokens"], batch["decoder_causal_attention"], rng)


def assert_equal_to_predict_batch(cfg, model, params, batch, shape, decoder, rng):
  expected = model.predict_batch(params, batch, rng, decoder=decoder)
  got = staged_decode(cfg, model, params, batch, shape, decoder, rng)
  np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(expected[0]))
  np.testing.assert_allclose(np.asarray(got[1]), np.asarray(expected[1]), rtol=1e-5, atol=1e-5)
  return got


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param((1, 1), marks=pytest.mark.slow),
        (2, 1),
        pytest.param((4, 1), marks=pytest.mark.slow),
        (2, 2),
    ],
    ids=str,
)
def test_greedy_through_the_stages_equals_predict_batch(scanned, shape):
  model, params, batch = scanned
  sequences, _ = assert_equal_to_predict_batch(
      tiny_config(num_layers=4), model, params, batch, shape, greedy(), jax.random.PRNGKey(0)
  )
  # The decodes are real continuations: every row but the full one generates, and none
  # generates past its room.
  room = [LENGTH - max(len(p), 0) for p in PROMPTS]
  generated = (np.asarray(sequences) != 0).sum(axis=1)
  assert all(0 < g <= r for g, r in zip(generated, room))


def test_sampling_with_several_decodes_uses_the_same_random_keys(scanned):
  model, params, batch = scanned
  decoder = Sampling(temperature=1.3, top_k=20, num_decodes=3)
  got, _ = assert_equal_to_predict_batch(
      tiny_config(num_layers=4), model, params, batch, (2, 1), decoder, jax.random.PRNGKey(7)
  )
  other, _ = staged_decode(
      tiny_config(num_layers=4), model, params, batch, (2, 1), decoder, jax.random.PRNGKey(8)
  )
  assert not np.array_equal(np.asarray(got), np.asarray(other))  # the key is really used


@pytest.mark.parametrize(
    "overrides",
    [
        dict(num_layers=3, scan_layers=False),  # unrolled, stages of 2 and 1 layers
        dict(num_layers=3, position_encoding="relative_bias", tie_embeddings=False),
        pytest.param(
            dict(num_layers=4, moe=MoeConfig(num_experts=4, moe_layer_interval=2)),
            marks=pytest.mark.slow,
        ),
    ],
    ids=["unrolled", "relative_bias_untied", "moe"],
)
def test_other_layouts_decode_through_two_stages_as_the_whole_model(overrides):
  cfg = tiny_config(**overrides)
  model, params, batch = build(cfg)
  assert_equal_to_predict_batch(cfg, model, params, batch, (2, 1), greedy(), jax.random.PRNGKey(0))
