"""Checkpointer: resume equality, restore onto another mesh, keep-N, shape mismatch, full disk."""

import errno
import os

from etils.epath import backend as epath_backend
import jax
import numpy as np
import pytest
import tensorstore

from model_zoo.moe.config import MoeConfig
from tests.trainers import helpers
from trainers import checkpoints


def _leaves(state):
  return [
      np.asarray(jax.device_get(x))
      for x in jax.tree.leaves((state.params, state.opt_state, state.step))
  ]


@pytest.mark.slow
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


def test_every_shard_of_a_restored_state_has_a_buffer_of_its_own(tmp_path):
  """Resuming donates the restored state to the train step. Orbax read a replicated array's
  shards on 8 host-memory CPU devices into one shared buffer, and donating it corrupted the
  heap: the suite crashed later inside XLA (a segfault compiling, an abort serializing)."""
  tr = helpers.make_trainer(num_devices=8)
  shapes = helpers.shapes_of(helpers.synthetic_batch(0))
  state, _ = helpers.train_losses(tr, 1)
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  ckpt.save(state, {"train_batches": 1})
  ckpt.close()
  restored, _ = checkpoints.Checkpointer(str(tmp_path)).restore_latest(tr.abstract_state(shapes)[0])
  leaves = [x for x in jax.tree.leaves(restored) if isinstance(x, jax.Array)]
  pointers = [s.data.unsafe_buffer_pointer() for x in leaves for s in x.addressable_shards]
  assert len(pointers) == 8 * len(leaves)
  assert len(set(pointers)) == len(pointers)
  resumed, losses = helpers.train_losses(tr, 2, state=restored, first_batch=1)
  assert int(resumed.step) == 3 and all(np.isfinite(losses))


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


def test_dense_checkpoint_into_a_moe_model_is_refused_by_name(tmp_path):
  shapes = helpers.shapes_of(helpers.synthetic_batch(0))
  tr = helpers.make_trainer(num_devices=1)
  checkpoints.Checkpointer(str(tmp_path)).save(tr.init_state(shapes), {"train_batches": 0})
  moe = helpers.make_trainer(num_devices=1, model=helpers.tiny_model(moe=MoeConfig(4)))
  with pytest.raises(
      checkpoints.CheckpointShapeError, match="of a dense model: .*InitialCheckpoint.upcycle = True"
  ):
    checkpoints.Checkpointer(str(tmp_path)).restore_latest(moe.abstract_state(shapes)[0])


def _save_steps(directory, steps, keep=3):
  """A trainer, and the states it saved at `steps` (one train step per batch 0, 1, ...)."""
  tr = helpers.make_trainer(num_devices=1)
  ckpt = checkpoints.Checkpointer(directory, keep=keep)
  state, saved = tr.init_state(helpers.shapes_of(helpers.synthetic_batch(0))), {}
  for i in range(max(steps)):
    state, _ = tr.train_step(state, helpers.synthetic_batch(i))
    if i + 1 in steps:
      ckpt.save(state, {"train_batches": i + 1})
      saved[i + 1] = state
  ckpt.close()
  return tr, saved


def _damage(directory, step, item):
  """Garbles the data position's JSON, or cuts every array file of the state to 3 bytes."""
  if item == "data":
    with open(os.path.join(directory, str(step), "data", "metadata"), "w") as f:
      f.write('{"train_batches": 3')
    return
  for root, _, files in os.walk(os.path.join(directory, str(step), "state")):
    for name in files:
      if name not in ("_METADATA", "_CHECKPOINT_METADATA", "_sharding", "manifest.ocdbt"):
        with open(os.path.join(root, name), "r+b") as f:
          f.truncate(3)


@pytest.mark.slow
@pytest.mark.parametrize("item", ["data", "state"])
def test_a_damaged_step_is_set_aside_and_the_retrained_step_saved(tmp_path, capsys, item):
  directory = str(tmp_path)
  tr, _ = _save_steps(directory, [1, 2, 3])
  _damage(directory, 3, item)
  shapes = helpers.shapes_of(helpers.synthetic_batch(0))

  ckpt = checkpoints.Checkpointer(directory, keep=2)
  state, position = ckpt.restore_latest(tr.abstract_state(shapes)[0])
  assert int(state.step) == 2 and position == {"train_batches": 2}
  assert "3" in os.listdir(directory)  # restoring alone (eval, infer) moves nothing
  state, _ = tr.train_step(state, helpers.synthetic_batch(2))
  assert ckpt.save(state, {"train_batches": 3}) == 3

  aside = [n for n in os.listdir(directory) if n.startswith("damaged-3-")]
  assert len(aside) == 1 and os.path.isdir(os.path.join(directory, aside[0], item))
  out = capsys.readouterr().out
  assert f"moved the damaged checkpoint step 3 to {os.path.join(directory, aside[0])}" in out
  assert ckpt.manager.all_steps() == [2, 3]  # keep=2 counted only readable steps
  state, _ = tr.train_step(state, helpers.synthetic_batch(3))
  ckpt.save(state, {"train_batches": 4})
  assert ckpt.manager.all_steps() == [3, 4]
  ckpt.close()
  assert sorted(os.listdir(directory)) == sorted(["3", "4", aside[0]])  # kept, not pruned

  restored, position = checkpoints.Checkpointer(directory).restore_latest(
      tr.abstract_state(shapes)[0], only_step=3
  )
  assert position == {"train_batches": 3}
  retrained, _ = helpers.train_losses(tr, 3)
  for a, b in zip(_leaves(restored), _leaves(retrained)):
    np.testing.assert_array_equal(a, b)


def test_a_readable_newest_step_is_never_set_aside(tmp_path):
  directory = str(tmp_path)
  tr, saved = _save_steps(directory, [1, 2])
  ckpt = checkpoints.Checkpointer(directory, keep=2)
  abstract = tr.abstract_state(helpers.shapes_of(helpers.synthetic_batch(0)))[0]
  state, _ = ckpt.restore_latest(abstract)
  assert int(state.step) == 2
  assert ckpt.save(saved[2], {"train_batches": 2}) == 2  # the same step again: kept as it is
  state, _ = tr.train_step(state, helpers.synthetic_batch(2))
  ckpt.save(state, {"train_batches": 3})
  ckpt.close()
  assert sorted(os.listdir(directory)) == ["2", "3"]


def _fail_writes(monkeypatch, where: str) -> None:
  """Makes the next save's writes fail as on a disk that fills up once the step's directory is
  made: each Python file write (JSON, metadata) as open() fails, or each array write as
  tensorstore fails (a ValueError naming the errno)."""
  if where == "python":
    real_open = epath_backend.os_backend.open

    def open_(path, mode):
      if "r" not in mode and not os.fspath(path).endswith("_CHECKPOINT_METADATA"):
        raise OSError(errno.ENOSPC, "No space left on device", os.fspath(path))
      return real_open(path, mode)

    monkeypatch.setattr(epath_backend.os_backend, "open", open_)
    return

  def write(store, *args, **kwargs):
    kvstore = store.spec().to_json()["kvstore"]
    if where == "bug":
      raise ValueError(f"a bug in writing {kvstore}")
    raise ValueError(
        f"RESOURCE_EXHAUSTED: Error writing {kvstore}: Failed to write 2048 bytes to file 18: "
        "No space left on device [os_error_code='28']"
    )

  monkeypatch.setattr(tensorstore.TensorStore, "write", write)


@pytest.mark.parametrize("where", ["tensorstore", "python"])
def test_a_full_disk_keeps_the_last_step_and_says_so(tmp_path, monkeypatch, caplog, where):
  directory = str(tmp_path)
  tr = helpers.make_trainer(num_devices=1)
  shapes = helpers.shapes_of(helpers.synthetic_batch(0))
  state, _ = helpers.train_losses(tr, 1)
  ckpt = checkpoints.Checkpointer(directory)
  ckpt.save(state, {"train_batches": 1})
  first = _leaves(state)
  second, _ = helpers.train_losses(tr, 1, state=state, first_batch=1)

  with monkeypatch.context() as patch:
    _fail_writes(patch, where)
    with pytest.raises(checkpoints.CheckpointDirError) as failure:
      ckpt.save(second, {"train_batches": 2})
  message = str(failure.value)
  assert message.startswith(f"Could not save checkpoint step 2 in {directory}: ")
  assert "No space left on device" in message
  assert "The last good checkpoint, step 1, is intact" in message
  assert "Free disk space there, or make --gin.MODEL_DIR writable" in message
  assert message.endswith("rerun the same command to resume from step 1.")
  # Orbax's thread tracebacks are held back. (An earlier test's unretrieved asyncio task may
  # be collected now and logged; only this test's directory counts.)
  assert not [r for r in caplog.records if r.exc_info and str(directory) in r.getMessage()]
  assert ckpt.latest_step() == 1
  assert "2" not in os.listdir(directory)  # the unfinished step is only in Orbax's tmp dir

  rerun = checkpoints.Checkpointer(directory)
  restored, position = rerun.restore_latest(tr.abstract_state(shapes)[0])
  assert position == {"train_batches": 1}
  for a, b in zip(_leaves(restored), first):
    np.testing.assert_array_equal(a, b)
  assert ckpt.save(second, {"train_batches": 2}) == 2  # with room again, the same one saves
  assert checkpoints.Checkpointer(directory).manager.all_steps() == [1, 2]
  assert sorted(os.listdir(directory)) == ["1", "2"]  # and Orbax deleted the unfinished one


def test_a_failed_save_that_is_not_the_disks_keeps_its_traceback(tmp_path, monkeypatch):
  tr = helpers.make_trainer(num_devices=1)
  ckpt = checkpoints.Checkpointer(str(tmp_path))
  _fail_writes(monkeypatch, "bug")
  with pytest.raises(ValueError, match="a bug in writing"):
    ckpt.save(helpers.train_losses(tr, 1)[0], {"train_batches": 1})
