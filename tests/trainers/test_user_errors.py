"""Mistakes a user can make in the trainers' settings fail with a `UserError` (printed in one
line by the command lines), never a plain ValueError/FileNotFoundError/OSError (a bug, with
its traceback)."""

import os

import jax
import pytest

from model_zoo.errors import ConfigError, MissingFileError, UserError
from tests.trainers import helpers
from trainers import checkpoints, distributed, optimizers, partitioning, restore, trainer


@pytest.mark.parametrize("shape", [(3, -1, 1, 1), (2, 2, 1, 1), (-1, -1, 1, 1), (8, 1, 1)])
def test_mesh_that_does_not_divide_the_devices_is_a_user_error(shape):
  with pytest.raises(ConfigError, match="Partitioner.mesh_shape"):
    partitioning.Partitioner(mesh_shape=shape, devices=jax.devices()[:8])


def test_batch_size_and_rules_naming_a_missing_mesh_axis_are_user_errors():
  p = partitioning.Partitioner(mesh_shape=(4, 2, 1, 1))
  with pytest.raises(UserError, match="BATCH_SIZE=12"):
    p.check_batch_size(12)
  bad_rules = partitioning.Partitioner(
      mesh_shape=(-1, 1, 1, 1), logical_axis_rules=(("embed", "model"),)
  )
  with pytest.raises(UserError, match="logical_axis_rules.*'model'"):
    bad_rules.spec_for(("embed",), (8,))


def test_trainer_microbatches_are_a_user_error():
  with pytest.raises(UserError, match="num_microbatches"):
    trainer.Trainer(helpers.tiny_model(), partitioning.Partitioner(), None, None, 0)


def test_missing_checkpoint_dir_is_a_user_error(tmp_path):
  # The check comes before the trainer is used, so none is built.
  with pytest.raises(MissingFileError, match="No checkpoint in .*MODEL_DIR") as e:
    restore.restore_state(None, str(tmp_path / "no_such_run"), {})
  assert isinstance(e.value, UserError) and isinstance(e.value, FileNotFoundError)
  assert not (tmp_path / "no_such_run").exists()


def test_missing_checkpoint_step_is_a_user_error(tmp_path):
  shapes = helpers.shapes_of(helpers.synthetic_batch(0))
  tr = helpers.make_trainer(num_devices=1)
  ckpt = checkpoints.Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(tr.init_state(shapes), {"train_batches": 0})
  ckpt.close()
  with pytest.raises(MissingFileError, match=r"No checkpoint at step 7 .* steps \[0\]"):
    restore.restore_state(tr, str(tmp_path), shapes, step=7)


def test_checkpoint_of_another_model_or_optimizer_is_a_user_error(tmp_path):
  assert issubclass(checkpoints.CheckpointShapeError, UserError)
  shapes = helpers.shapes_of(helpers.synthetic_batch(0))
  tr = helpers.make_trainer(num_devices=1)
  checkpoints.Checkpointer(str(tmp_path)).save(tr.init_state(shapes), {"train_batches": 0})
  other_optimizer = helpers.make_trainer(num_devices=1, optimizer=optimizers.adafactor)
  with pytest.raises(
      UserError, match=r"\(step 0\) whose optimizer state comes from another optimizer config"
  ):
    checkpoints.Checkpointer(str(tmp_path)).restore_latest(
        other_optimizer.abstract_state(shapes)[0]
    )


def test_unwritable_checkpoint_dir_is_a_user_error(tmp_path):
  (tmp_path / "a_file").write_text("not a directory")
  with pytest.raises(UserError, match="MODEL_DIR") as e:
    checkpoints.Checkpointer(str(tmp_path / "a_file" / "checkpoints"))
  assert isinstance(e.value, OSError)


def test_bad_multihost_settings_are_user_errors(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.config, "update", lambda *args: calls.append(args))
  monkeypatch.setenv("PODZOO_NUM_PROCESSES", "two")
  with pytest.raises(ConfigError, match="PODZOO_NUM_PROCESSES='two'"):
    distributed.initialize()
  monkeypatch.delenv("PODZOO_NUM_PROCESSES")
  with pytest.raises(ConfigError, match="needs a port"):
    distributed.initialize(coordinator_address="10.0.0.1", num_processes=2, process_id=0)

  def jax_refuses(**kwargs):
    raise ValueError("process_id must be < num_processes.")

  monkeypatch.setattr(jax.distributed, "initialize", jax_refuses)
  with pytest.raises(ConfigError, match="--process_id"):
    distributed.initialize(coordinator_address="10.0.0.1:99", num_processes=2, process_id=5)
  assert os.environ.get("PODZOO_NUM_PROCESSES") is None
