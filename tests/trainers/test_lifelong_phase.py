"""A Lifelong-MoE growth phase: frozen_experts keeps the old experts and router columns
bit-identical while the rest trains; through the command line (gin/runs/lifelong_phase.gin)
a phase grows the previous phase's checkpoint, distils from it and leaves its experts as
they were."""

import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
from flax import traverse_util

from model_zoo import dense, lifelong
from model_zoo.errors import ConfigError
from model_zoo.moe.config import MoeConfig
from tests.tiny import tiny_config
from tests.trainers import helpers
from tests.trainers.test_cli import quick_flags, saved_state
from trainers import optimizers, partitioning, trainer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MOE = MoeConfig(num_experts=4, top_k=2, mlp_dim=16, group_size=16)
EXPERT_PATHS = ("decoder/layers/layer_1/moe/wi_0", "decoder/layers/layer_1/moe/wo")
ROUTER = "decoder/layers/layer_1/moe/router/kernel"


def _flat(tree) -> dict[str, np.ndarray]:
  return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def _phase_optimizer(num_frozen=2):
  schedule = optimizers.constant_schedule(1e-2)
  inner = optimizers.with_gradient_clipping(optimizers.adamw(schedule, weight_decay=0.1))
  return optimizers.trainable_only(
      optimizers.frozen_experts(inner, num_frozen), frozen_patterns=["^teacher/"]
  )


def _trainer(model, optimizer) -> trainer.Trainer:
  partitioner = partitioning.Partitioner(mesh_shape=(-1, 1, 1, 1), devices=jax.devices()[:1])
  return trainer.Trainer(model, partitioner, optimizer, optimizers.constant_schedule(1e-2))


def test_the_old_experts_and_router_columns_stay_bit_identical():
  model = lifelong.LifelongMoeModel(
      dense.DecoderOnlyLM(tiny_config(moe=MOE)), previous_num_experts=2
  )
  tr = _trainer(model, _phase_optimizer())
  state = tr.init_state(helpers.shapes_of(helpers.synthetic_batch(0)))
  before = _flat(jax.device_get(state.params))
  state, _ = helpers.train_losses(tr, 3, state)
  after = _flat(jax.device_get(state.params))
  for path in EXPERT_PATHS:  # [blocks, experts, in, out]
    np.testing.assert_array_equal(after[path][:, :2], before[path][:, :2], err_msg=path)
    assert not np.allclose(after[path][:, 2:], before[path][:, 2:]), path
  np.testing.assert_array_equal(after[ROUTER][..., :2], before[ROUTER][..., :2])
  assert not np.allclose(after[ROUTER][..., 2:], before[ROUTER][..., 2:])
  for path, value in before.items():
    if path.startswith("teacher/"):
      np.testing.assert_array_equal(after[path], value, err_msg=path)
  query = "decoder/layers/layer_0/self_attention/query/kernel"
  assert not np.allclose(after[query], before[query])
  # The frozen experts keep their (sharded) optimizer state: Adam's moments span every expert.
  moments = [
      leaf
      for leaf in jax.tree.leaves(state.opt_state)
      if getattr(leaf, "shape", None) == before[EXPERT_PATHS[0]].shape
  ]
  assert moments


def test_frozen_experts_names_a_count_that_freezes_everything_or_nothing():
  params = {"decoder": {"layers": {"layer_1": {"moe": {"wo": np.zeros((1, 4, 3, 2))}}}}}
  tx = optimizers.frozen_experts(optax.sgd(0.1), num_frozen=4)
  with pytest.raises(ConfigError, match=r"num_frozen=4, and decoder/.*/moe/wo has 4 experts"):
    tx.init(params)
  with pytest.raises(ConfigError, match="no mixture-of-experts layers"):
    optimizers.frozen_experts(optax.sgd(0.1), num_frozen=1).init({"w": np.zeros(3)})


def _train_process(*flags) -> str:
  """`python -m trainers.train` in a process of its own (as users run it); its output."""
  done = subprocess.run(
      [sys.executable, "-m", "trainers.train", *flags],
      cwd=pathlib.Path(__file__).resolve().parents[2],
      capture_output=True,
      text=True,
      check=False,
  )
  assert done.returncode == 0, done.stdout + done.stderr
  return done.stdout + done.stderr


@pytest.mark.slow
def test_a_phase_through_the_command_line(tmp_path):
  """Phase 0: GLaM-tiny with 2 experts; phase 1 grows it to 4 with lifelong_phase.gin, each in
  a process of its own, as users run them."""
  model = ["--gin_file=gin/models/glam_tiny.gin", "--gin.TransformerConfig.dtype='float32'"]
  phase0, phase1 = tmp_path / "phase0", tmp_path / "phase1"
  _train_process(*quick_flags(phase0, 2, *model, "--gin.MoeConfig.num_experts=2"))
  flags = quick_flags(
      phase1,
      2,
      *model,
      "--gin_file=gin/runs/lifelong_phase.gin",
      f"--gin.INITIAL_CHECKPOINT_PATH='{phase0}'",
      "--gin.PREVIOUS_NUM_EXPERTS=2",
      "--gin.MoeConfig.num_experts=4",
  )
  log = _train_process(*flags)
  assert "reshaped" in log and "teacher/decoder" in log  # grown, and the teacher mapped
  old = _flat(saved_state(phase0, 2)["params"])
  new = _flat(saved_state(phase1, 2)["params"])
  for path in EXPERT_PATHS:
    np.testing.assert_array_equal(new[path][:, :2], old[path], err_msg=path)
  np.testing.assert_array_equal(new[ROUTER][..., :2], old[ROUTER])
  for path, value in old.items():  # the teacher is the previous phase's model, untouched
    np.testing.assert_array_equal(new[f"teacher/{path}"], value, err_msg=path)
  rows = [json.loads(line) for line in (phase1 / "train_metrics.jsonl").read_text().splitlines()]
  assert all(row["distillation/kl"] >= 0 for row in rows if "distillation/kl" in row)
  assert any("distillation/kl" in row for row in rows)
