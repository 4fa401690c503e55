"""Fine-tuning from another run's checkpoint: parameters only, mapped, reported, checked."""

import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from model_zoo.errors import ConfigError, MissingFileError
from model_zoo.moe.config import MoeConfig
from tests.trainers import helpers
from tests.trainers.test_cli import quick_flags, run_cli
from trainers import checkpoints, optimizers, restore
from trainers.initial_checkpoint import InitialCheckpoint

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SHAPES = helpers.shapes_of(helpers.synthetic_batch(0))


def _flat(tree) -> dict[str, np.ndarray]:
  return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """A MODEL_DIR whose step-3 checkpoint holds trained (not initial) parameters."""
  model_dir = tmp_path_factory.mktemp("pretrained")
  tr = helpers.make_trainer(num_devices=1)
  state = tr.init_state(SHAPES)
  for i in range(3):
    state, _ = tr.train_step(state, helpers.synthetic_batch(i))
  ckpt = checkpoints.Checkpointer(str(model_dir / "checkpoints"))
  ckpt.save(state, {"train_batches": 3})
  ckpt.close()
  return model_dir, _flat(jax.device_get(state.params))


def _fresh_run(initial, model=None):
  return helpers.finetune_start(initial, os.path.join(os.environ["PYTEST_TMP"], "ft"), model)


@pytest.fixture(autouse=True)
def _tmp_env(tmp_path, monkeypatch):
  monkeypatch.setenv("PYTEST_TMP", str(tmp_path))


def test_loads_the_parameters_with_a_fresh_optimizer_and_step(pretrained, capfd):
  model_dir, source = pretrained
  state = _fresh_run(InitialCheckpoint(path=str(model_dir)))
  assert int(state.step) == 0
  loaded = _flat(jax.device_get(state.params))
  assert loaded.keys() == source.keys()
  for path in source:
    np.testing.assert_array_equal(loaded[path], source[path], err_msg=path)
  for leaf in jax.tree.leaves(jax.device_get(state.opt_state)):  # Adam's count, mu, nu
    assert not np.asarray(leaf).any()
  out = capfd.readouterr().out
  assert f"Initialised from {model_dir}/checkpoints/3/state: 11 parameters loaded, 0 mapped" in out


def test_every_shard_of_every_parameter_has_a_buffer_of_its_own(pretrained, tmp_path):
  """The train step donates the parameters. Read from a checkpoint, a replicated array's
  shards on 8 host-memory CPU devices could share one buffer, and a run aborted (a double
  free) in its first steps; each parameter is now copied into buffers of its own."""
  model_dir, _ = pretrained
  state = helpers.finetune_start(
      InitialCheckpoint(path=str(model_dir)), str(tmp_path / "ft"), num_devices=8
  )
  pointers = [
      shard.data.unsafe_buffer_pointer()
      for leaf in jax.tree.leaves(state.params)
      for shard in leaf.addressable_shards
  ]
  assert len(pointers) == 8 * len(jax.tree.leaves(state.params))
  assert len(set(pointers)) == len(pointers)


def test_a_dense_checkpoint_cannot_start_a_moe_model(pretrained):
  model_dir, _ = pretrained
  with pytest.raises(ConfigError, match="holds a dense model: .*TransformerConfig.moe"):
    _fresh_run(InitialCheckpoint(path=str(model_dir)), helpers.tiny_model(moe=MoeConfig(4)))


def test_rules_map_renamed_parameters_and_initialise_new_ones(pretrained, tmp_path, capfd):
  model_dir, source = pretrained
  # A checkpoint in which the final norm was called "old_norm" and the MLP input is absent.
  renamed = {
      k.replace("head/final_norm", "head/old_norm"): v for k, v in source.items() if "wi_0" not in k
  }
  tree = {
      "step": np.int32(3),
      "params": traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in renamed.items()}),
  }
  ocp.StandardCheckpointer().save(str(tmp_path / "old" / "7" / "state"), tree)
  ocp.StandardCheckpointer().close()
  rules = [("head/final_norm/(.*)", r"head/old_norm/\1"), (".*/wi_0/kernel", None)]
  fresh = _flat(jax.device_get(_fresh_run(None).params))
  state = _fresh_run(InitialCheckpoint(path=str(tmp_path / "old"), assignment_map=rules))
  loaded = _flat(jax.device_get(state.params))
  np.testing.assert_array_equal(loaded["head/final_norm/scale"], source["head/final_norm/scale"])
  np.testing.assert_array_equal(
      loaded["decoder/layers/mlp/wi_0/kernel"], fresh["decoder/layers/mlp/wi_0/kernel"]
  )
  assert not np.array_equal(
      loaded["decoder/layers/mlp/wi_0/kernel"], source["decoder/layers/mlp/wi_0/kernel"]
  )
  np.testing.assert_array_equal(
      loaded["token_embedder/embedding"], source["token_embedder/embedding"]
  )
  out = capfd.readouterr().out
  assert "9 parameters loaded, 1 mapped, 1 initialised fresh, 0 in the checkpoint not used" in out
  assert "mapped  head/final_norm/scale <- head/old_norm/scale" in out
  assert "fresh   decoder/layers/mlp/wi_0/kernel" in out


def test_mistakes_name_the_parameter_and_the_fix(pretrained, tmp_path):
  model_dir, _ = pretrained
  with pytest.raises(ConfigError, match=r"rules \[\('nothing/.\*', None\)\] match no parameter"):
    _fresh_run(InitialCheckpoint(path=str(model_dir), assignment_map=[("nothing/.*", None)]))
  with pytest.raises(ConfigError, match="maps head/final_norm/scale to head/gone, which the"):
    _fresh_run(
        InitialCheckpoint(str(model_dir), assignment_map=[("head/final_norm/scale", "head/gone")])
    )
  wider = helpers.tiny_model(mlp_dim=96)
  with pytest.raises(
      ConfigError,
      match=r"Parameter decoder/layers/mlp/wi_0/kernel: .* shape \(2, 32, 64\), the model's \(2, 32, 96\)\. Add \('decoder/layers/mlp/wi_0/kernel', None\)",
  ):
    _fresh_run(InitialCheckpoint(path=str(model_dir)), model=wider)
  deeper = helpers.tiny_model(num_layers=3)  # scanned layers: a grown leading axis
  with pytest.raises(ConfigError, match="shape"):
    _fresh_run(InitialCheckpoint(path=str(model_dir)), model=deeper)
  with pytest.raises(MissingFileError, match="INITIAL_CHECKPOINT_PATH=.*holds no checkpoint"):
    _fresh_run(InitialCheckpoint(path=str(tmp_path / "nowhere")))
  with pytest.raises(MissingFileError, match=r"InitialCheckpoint.step=9: .* holds steps \[3\]"):
    _fresh_run(InitialCheckpoint(path=str(model_dir), step=9))


def test_strict_false_initialises_what_the_checkpoint_lacks(pretrained, tmp_path):
  model_dir, source = pretrained
  tree = {
      "step": np.int32(1),
      "params": traverse_util.unflatten_dict(
          {tuple(k.split("/")): v for k, v in source.items() if k != "token_embedder/embedding"}
      ),
  }
  ocp.StandardCheckpointer().save(str(tmp_path / "part" / "1" / "state"), tree)
  ocp.StandardCheckpointer().close()
  with pytest.raises(
      ConfigError,
      match="1 parameters of the model are not in the checkpoint .*token_embedder/embedding",
  ):
    _fresh_run(InitialCheckpoint(path=str(tmp_path / "part")))
  state = _fresh_run(InitialCheckpoint(path=str(tmp_path / "part"), strict=False))
  loaded = _flat(jax.device_get(state.params))
  np.testing.assert_array_equal(loaded["head/final_norm/scale"], source["head/final_norm/scale"])
  assert not np.array_equal(loaded["token_embedder/embedding"], source["token_embedder/embedding"])


def test_eval_restores_parameters_of_a_checkpoint_from_another_optimizer(pretrained):
  model_dir, source = pretrained
  adafactor_trainer = helpers.make_trainer(num_devices=1, optimizer=optimizers.adafactor)
  state = restore.restore_state(adafactor_trainer, str(model_dir), SHAPES)
  assert state.opt_state is None and int(state.step) == 3
  loaded = _flat(jax.device_get(state.params))
  for path in source:
    np.testing.assert_array_equal(loaded[path], source[path], err_msg=path)


@pytest.mark.slow
def test_the_finetune_run_resumes_from_its_own_checkpoints(tmp_path, capfd):
  base, tuned = tmp_path / "base", tmp_path / "tuned"
  code, log = run_cli(capfd, *quick_flags(base, 2))
  assert code == 0, log
  finetune = ["--gin_file=gin/runs/finetune.gin", f"--gin.INITIAL_CHECKPOINT_PATH='{base}'"]
  code, log = run_cli(capfd, *quick_flags(tuned, 2), *finetune)
  assert code == 0 and f"Initialised from {base}/checkpoints/2/state: " in log, log
  assert "Restored checkpoint" not in log
  shutil.rmtree(base)  # never read again once the run has checkpoints of its own
  code, log = run_cli(capfd, *quick_flags(tuned, 4), *finetune)
  assert code == 0 and "Restored checkpoint at step 2" in log and "Initialised from" not in log
  assert sorted(os.listdir(tuned / "checkpoints")) == ["2", "4"]
