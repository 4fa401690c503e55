"""Frozen parameters kept by reference to the initial checkpoint (trainers/param_references.py):
never saved again, read back bit for bit on resume and for inference, a chain of runs refers
to the original, and a source that moved or changed is named."""

import json
import os
import shutil

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from model_zoo.errors import ConfigError
from tests.trainers import helpers
from trainers import checkpoints, optimizers, param_references, restore, train
from tools import benchmark_common
from trainers.initial_checkpoint import InitialCheckpoint

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
FROZEN = "token_embedder/embedding"
SHAPES = helpers.shapes_of(helpers.synthetic_batch(0))


def frozen_table_adamw(schedule):
  return optimizers.trainable_only(
      optax.adamw(schedule, weight_decay=0.1), frozen_patterns=[f"^{FROZEN}$"]
  )


@pytest.fixture
def lm(tmp_path):
  """A tiny LM's MODEL_DIR after one step, and its embedding table."""
  params = helpers.save_trained_lm(tmp_path / "lm", steps=1)
  return str(tmp_path / "lm"), np.asarray(params["token_embedder"]["embedding"])


def start(initial_dir, model_dir, optimizer=frozen_table_adamw, **initial):
  """(trainer, checkpointer, state) of a run in `model_dir` as train() starts or resumes it."""
  tr = helpers.make_trainer(num_devices=1, optimizer=optimizer)
  ckpt = checkpoints.Checkpointer(os.path.join(model_dir, "checkpoints"))
  initial = InitialCheckpoint(path=initial_dir, **{"by_reference": [FROZEN], **initial})
  state, _ = train._restore_or_init(tr, ckpt, SHAPES, initial)
  return tr, ckpt, state


def train_and_save(initial_dir, model_dir, steps=2, **initial):
  tr, ckpt, state = start(initial_dir, model_dir, **initial)
  state, _ = helpers.train_losses(tr, steps, state)
  ckpt.save(state, {"train_batches": steps})
  ckpt.close()
  return jax.device_get(state.params)


def saved_state(model_dir, step):
  return ocp.StandardCheckpointer().restore(
      os.path.join(model_dir, "checkpoints", str(step), "state")
  )


def references_file(model_dir, step):
  return os.path.join(model_dir, "checkpoints", str(step), param_references.ITEM, "metadata")


def test_kept_by_reference_it_is_not_saved_and_comes_back_bit_for_bit(lm, tmp_path):
  lm_dir, table = lm
  run = str(tmp_path / "run")
  trained = train_and_save(lm_dir, run)
  np.testing.assert_array_equal(trained["token_embedder"]["embedding"], table)
  saved = saved_state(run, 2)
  assert "token_embedder" not in saved["params"]
  assert not any(np.shape(x) == table.shape for x in jax.tree.leaves(saved))  # nor Adam's
  with open(references_file(run, 2)) as f:
    record = json.load(f)[FROZEN]
  assert record["state_dir"] == os.path.join(lm_dir, "checkpoints", "1", "state")
  assert record["source"] == FROZEN and tuple(record["shape"]) == table.shape

  _, ckpt, resumed = start(lm_dir, run)  # resumes from step 2, not the LM
  ckpt.close()
  assert int(resumed.step) == 2
  flat_trained = param_references.flat(trained)
  flat_resumed = param_references.flat(jax.device_get(resumed.params))
  assert flat_resumed.keys() == flat_trained.keys()
  for path, value in flat_trained.items():
    np.testing.assert_array_equal(flat_resumed[path], value, err_msg=path)

  model = helpers.tiny_model()
  step, params = restore.restore_params(model, run)  # eval and inference read it too
  assert step == 2
  np.testing.assert_array_equal(jax.device_get(params)["token_embedder"]["embedding"], table)
  params = benchmark_common.newest_params(model, run)  # and the tools
  np.testing.assert_array_equal(jax.device_get(params)["token_embedder"]["embedding"], table)


@pytest.mark.slow
def test_a_moved_or_rewritten_source_is_named_not_replaced(lm, tmp_path):
  lm_dir, _ = lm
  run = str(tmp_path / "run")
  train_and_save(lm_dir, run)
  source = os.path.join(lm_dir, "checkpoints", "1", "state")
  os.rename(lm_dir, lm_dir + "_moved")
  with pytest.raises(param_references.ReferencedCheckpointError, match="no longer exists") as e:
    start(lm_dir, run)
  assert source in str(e.value) and FROZEN in str(e.value)
  # The same step number retrained: other values under the same path.
  tr = helpers.make_trainer(num_devices=1)
  other, _ = helpers.train_losses(tr, 2)
  ckpt = checkpoints.Checkpointer(os.path.join(lm_dir, "checkpoints"))
  ckpt.save(other.replace(step=other.step - 1), {"train_batches": 1})
  ckpt.close()
  with pytest.raises(param_references.ReferencedCheckpointError, match="other values"):
    start(lm_dir, run)
  shutil.rmtree(lm_dir)
  os.rename(lm_dir + "_moved", lm_dir)  # put back: it restores again
  assert int(start(lm_dir, run)[2].step) == 2


@pytest.mark.slow
def test_a_run_started_from_a_run_that_refers_refers_to_the_original(lm, tmp_path):
  lm_dir, table = lm
  first, second, copied = (str(tmp_path / n) for n in ("first", "second", "copied"))
  train_and_save(lm_dir, first)
  train_and_save(first, second)
  with open(references_file(second, 2)) as f:
    assert json.load(f)[FROZEN]["state_dir"] == os.path.join(lm_dir, "checkpoints", "1", "state")
  # Without by_reference the table is read through the first run's reference and saved.
  train_and_save(first, copied, by_reference=[])
  np.testing.assert_array_equal(
      saved_state(copied, 2)["params"]["token_embedder"]["embedding"], table
  )
  assert not os.path.exists(references_file(copied, 2))


def test_a_damaged_list_of_references_falls_back_to_the_previous_step(lm, tmp_path):
  lm_dir, table = lm
  run = str(tmp_path / "run")
  tr, ckpt, state = start(lm_dir, run)
  for step in (1, 2):
    state, _ = tr.train_step(state, helpers.synthetic_batch(step))
    ckpt.save(state, {"train_batches": step})
  ckpt.close()
  with open(references_file(run, 2), "w") as f:
    f.write("{not json")
  _, ckpt, resumed = start(lm_dir, run)
  ckpt.close()
  assert int(resumed.step) == 1
  np.testing.assert_array_equal(
      jax.device_get(resumed.params)["token_embedder"]["embedding"], table
  )


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"optimizer": optimizers.adamw}, "the optimizer trains it"),
        ({"by_reference": ["token_embedder/embeddings"]}, "match no parameter"),
        ({"assignment_map": [(FROZEN, None)]}, "does not read unchanged"),
    ],
)
def test_settings_under_which_it_cannot_be_kept_by_reference(lm, tmp_path, settings, message):
  lm_dir, _ = lm
  with pytest.raises(ConfigError, match=message):
    start(lm_dir, str(tmp_path / "run"), **settings)


def test_the_fingerprint_is_of_the_values_not_their_sharding():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]), ("data",))
  values = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
  sharded = jax.device_put(
      values, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  )
  replicated = jax.device_put(
      values, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  )
  assert param_references.fingerprint(sharded) == param_references.fingerprint(replicated)
  nudged = values.copy()
  nudged[15, 3] = np.nextafter(nudged[15, 3], np.inf)
  assert param_references.fingerprint(sharded) != param_references.fingerprint(
      jax.numpy.asarray(nudged)
  )
  assert param_references.fingerprint(values) != param_references.fingerprint(values.reshape(4, 16))
