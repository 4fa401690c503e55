"""Mesh construction, rules -> shardings, and the errors a user can hit."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from tests.trainers import helpers
from trainers import partitioning


def test_minus_one_takes_the_rest_of_the_devices():
  assert partitioning.resolve_mesh_shape((-1, 2, 1, 1), 8) == (4, 2, 1, 1)
  assert partitioning.resolve_mesh_shape((2, 2, 2, 1), 8) == (2, 2, 2, 1)


@pytest.mark.parametrize("shape", [(3, -1, 1, 1), (2, 2, 1, 1), (-1, -1, 1, 1), (0, 8, 1, 1)])
def test_mesh_that_does_not_divide_the_devices_is_rejected_by_name(shape):
  with pytest.raises(ValueError, match="Partitioner.mesh_shape"):
    partitioning.resolve_mesh_shape(shape, 8)


def test_batch_not_divisible_by_data_parallel_size():
  p = partitioning.Partitioner(mesh_shape=(4, 2, 1, 1))
  assert p.data_parallel_size == 8
  with pytest.raises(
      ValueError, match="BATCH_SIZE=12 is not divisible by the data-parallel size 8"
  ):
    p.check_batch_size(12)
  p.check_batch_size(16)


def test_dimension_the_mesh_does_not_divide_is_replicated():
  p = partitioning.Partitioner(mesh_shape=(2, 2, 2, 1))
  assert p.spec_for(("embed", "kv_heads", "kv"), (32, 1, 8)) == P("fsdp", None, None)
  assert p.spec_for(("embed", "kv_heads", "kv"), (32, 2, 8)) == P("fsdp", "tensor", None)


def test_parameters_and_optimizer_state_are_sharded_as_the_rules_say():
  tr = helpers.make_trainer(mesh_shape=(2, 2, 2, 1))
  state = tr.init_state(helpers.shapes_of(helpers.synthetic_batch(0)))
  layers = state.params["decoder"]["layers"]
  expected = {
      ("mlp", "wi_0", "kernel"): P(None, "fsdp", "tensor"),
      ("mlp", "wo", "kernel"): P(None, "tensor", "fsdp"),
      ("self_attention", "query", "kernel"): P(None, "fsdp", "tensor", None),
      ("self_attention", "out", "kernel"): P(None, "tensor", None, "fsdp"),
  }
  for path, spec in expected.items():
    leaf = layers
    for key in path:
      leaf = leaf[key]
    assert leaf.sharding.spec == spec, path
    # Each device really holds only its shard.
    shard_shape = leaf.addressable_shards[0].data.shape
    assert np.prod(shard_shape) * 4 == np.prod(leaf.shape), (path, shard_shape, leaf.shape)
  assert state.params["token_embedder"]["embedding"].sharding.spec == P("tensor", "fsdp")
  # Adam's first moment mirrors the parameter's sharding.
  mu = jax.tree.leaves(state.opt_state, is_leaf=lambda x: hasattr(x, "mu"))
  adam = [s for s in mu if hasattr(s, "mu")][0]
  assert adam.mu["decoder"]["layers"]["mlp"]["wi_0"]["kernel"].sharding.spec == P(
      None, "fsdp", "tensor"
  )
