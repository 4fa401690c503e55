"""Decoding on a mesh of 8 fake CPU devices gives what one device gives.

jax.jit(Model.predict_batch) runs under the Partitioner's mesh and rules with the batch
sharded over (data, fsdp) and the parameters sharded by their logical axis names; on the
(2, 2, 2, 1) mesh heads, KV heads, MLP and vocabulary are split over the tensor axis and
the embedding dimension over fsdp.
"""

import functools

import jax
import numpy as np
import pytest

from tests.model_zoo.decoding import common
from trainers import partitioning
from model_zoo.decoding import beam_search, sampling

LENGTH = common.LM_LENGTH
PROMPTS = common.PROMPTS
DECODERS = {"greedy": sampling.greedy(), "beam": beam_search.BeamSearch(beam_size=4, alpha=0.6)}
MESHES = {"one_device": None, "data8": (8, 1, 1, 1), "data2_fsdp2_tensor2": (2, 2, 2, 1)}


@functools.lru_cache(maxsize=None)
def _setup():
  model, batch, params = common.lm16()
  boxed = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)
  return model, batch, params, boxed


def _partitioner(name):
  if MESHES[name] is None:
    return partitioning.Partitioner(devices=jax.devices()[:1])
  return partitioning.Partitioner(mesh_shape=MESHES[name])


@functools.lru_cache(maxsize=None)
def _decode(decoder_name, mesh_name):
  model, batch, params, boxed = _setup()
  partitioner = _partitioner(mesh_name)
  sharded_params = jax.device_put(params, partitioner.param_shardings(boxed))
  sharded_batch = partitioner.shard_batch(batch)
  decoder = DECODERS[decoder_name]
  fn = jax.jit(lambda p, b: model.predict_batch(p, b, decoder=decoder, return_all_decodes=True))
  with partitioner.context():
    sequences, scores = fn(sharded_params, sharded_batch)
  return partitioner, sharded_params, sharded_batch, np.asarray(sequences), np.asarray(scores)


def test_parameters_and_batch_are_really_sharded():
  partitioner, params, batch, _, _ = _decode("greedy", "data2_fsdp2_tensor2")
  query = params["decoder"]["layers"]["self_attention"]["query"][
      "kernel"
  ]  # layers, embed, heads, kv
  assert query.sharding.spec == partitioning.P(None, "fsdp", "tensor", None)
  assert len(query.addressable_shards) == 8 and query.addressable_shards[0].data.shape == (
      2,
      8,
      2,
      8,
  )
  tokens = batch["decoder_input_tokens"]
  assert tokens.addressable_shards[0].data.shape == (2, LENGTH)
  _, _, batch8, _, _ = _decode("greedy", "data8")
  assert batch8["decoder_input_tokens"].addressable_shards[0].data.shape == (1, LENGTH)
  assert partitioner.mesh.shape == {"data": 2, "fsdp": 2, "tensor": 2, "expert": 1}


@pytest.mark.parametrize("mesh_name", ["data8", "data2_fsdp2_tensor2"])
@pytest.mark.parametrize("decoder_name", sorted(DECODERS))
def test_mesh_decodes_equal_one_device_decodes(decoder_name, mesh_name):
  *_, expected, expected_scores = _decode(decoder_name, "one_device")
  *_, sequences, scores = _decode(decoder_name, mesh_name)
  rows_per_example = 1 if decoder_name == "greedy" else 4
  assert sequences.shape == (len(PROMPTS), rows_per_example, LENGTH)
  assert len({tuple(s) for s in expected.reshape(-1, LENGTH)}) > 4  # the rows differ
  np.testing.assert_array_equal(sequences, expected)
  finished = expected_scores > -1e29
  np.testing.assert_allclose(scores[finished], expected_scores[finished], rtol=1e-5, atol=1e-5)
