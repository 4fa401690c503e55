"""Checkpointer: resume equality, restore onto another mesh, keep-N, shape mismatch."""

import jax
import numpy as np
import pytest

from tests.trainers import helpers
from trainers import checkpoints


def _leaves(state):
  return [
      np.asarray(jax.device_get(x))
      for x in jax.tree.leaves((state.params, state.opt_state, state.step))
  ]


def test_resume_from_checkpoint_equals_uninterrupted_training(tmp_path):
  shapes = helpers.shapes_of(helpers.synthetic_batch(0))
  straight, _ = helpers.train_losses(helpers.make_trainer(num_devices=1), 6)

  first = helpers.make_trainer(num_devices=1)
  state, _ = helpers.train_losses(first, 3)
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  ckpt.save(state, {"train_batches": 3})
  ckpt.close()

  second = helpers.make_trainer(num_devices=1)
  restored, position = checkpoints.Checkpointer(str(tmp_path)).restore_latest(
      second.abstract_state(shapes)[0]
  )
  assert position == {"train_batches": 3} and int(restored.step) == 3
  resumed, _ = helpers.train_losses(
      second, 3, state=restored, first_batch=position["train_batches"]
  )
  for a, b in zip(_leaves(resumed), _leaves(straight)):
    np.testing.assert_array_equal(a, b)


def test_restore_onto_a_different_mesh(tmp_path):
  shapes = helpers.shapes_of(helpers.synthetic_batch(0))
  data_parallel = helpers.make_trainer(mesh_shape=(8, 1, 1, 1))
  state, _ = helpers.train_losses(data_parallel, 2)
  checkpoints.Checkpointer(str(tmp_path)).save(state, {"train_batches": 2})

  sharded = helpers.make_trainer(mesh_shape=(2, 2, 2, 1))
  restored, _ = checkpoints.Checkpointer(str(tmp_path)).restore_latest(
      sharded.abstract_state(shapes)[0]
  )
  kernel = restored.params["decoder"]["layers"]["mlp"]["wi_0"]["kernel"]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
  for a, b in zip(_leaves(restored), _leaves(state)):
    np.testing.assert_array_equal(a, b)
  # and training continues on the new mesh as it would have on the old one
  _, losses_new = helpers.train_losses(sharded, 2, state=restored, first_batch=2)
  _, losses_old = helpers.train_losses(data_parallel, 2, state=state, first_batch=2)
  np.testing.assert_allclose(losses_new, losses_old, rtol=1e-4)


def test_keeps_the_newest_n_and_honours_the_save_period(tmp_path):
  tr = helpers.make_trainer(num_devices=1)
  ckpt = checkpoints.Checkpointer(str(tmp_path), keep=2, save_period=2)
  assert [s for s in range(1, 7) if ckpt.should_save(s)] == [2, 4, 6]
  state = tr.init_state(helpers.shapes_of(helpers.synthetic_batch(0)))
  for i in range(5):
    state, _ = tr.train_step(state, helpers.synthetic_batch(i))
    ckpt.save(state, {"train_batches": i + 1})
  assert ckpt.manager.all_steps() == [4, 5]
  assert ckpt.latest_step() == 5


def test_checkpoint_of_another_model_is_refused(tmp_path):
  shapes = helpers.shapes_of(helpers.synthetic_batch(0))
  tr = helpers.make_trainer(num_devices=1)
  checkpoints.Checkpointer(str(tmp_path)).save(tr.init_state(shapes), {"train_batches": 0})
  wider = helpers.make_trainer(num_devices=1, model=helpers.tiny_model(emb_dim=48))
  with pytest.raises(checkpoints.CheckpointShapeError, match="different model"):
    checkpoints.Checkpointer(str(tmp_path)).restore_latest(wider.abstract_state(shapes)[0])
