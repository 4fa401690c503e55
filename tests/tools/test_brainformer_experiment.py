"""tools/brainformer_experiment: the steps each model needs to reach GLaM's final eval loss (the
convergence speed-up), steps/s, its table, and the equal activated size of its models."""

import gin
import jax
import numpy as np
import pytest

from model_zoo import dense, models
from tools import benchmark_moe, benchmark_train, brainformer_experiment, moe_experiment


def _curve(losses, seconds_per_step, period=100):
  steps = [period * (i + 1) for i in range(len(losses))]
  return {
      "step": steps,
      "eval_loss": losses,
      "train_seconds": [s * seconds_per_step for s in steps],
      "params_total": 2e6,
      "params_activated": 1e6,
  }


def _results():
  models = {
      benchmark_moe.DENSE: _curve([4.0, 3.8, 3.7, 3.6], 0.1),
      brainformer_experiment.GLAM: _curve([3.9, 3.6, 3.5, 3.4], 0.2),
      "Brainformer": _curve([3.8, 3.4, 3.3, 3.2], 0.25),
  }
  settings = {
      "steps": 400,
      "batch_size": 16,
      "eval_period": 100,
      "eval_steps": 20,
      "timing_steps": 30,
  }
  summary = moe_experiment.summarise(settings, models, tuple(settings))
  for row, ms in zip(summary["models"].values(), (100.0, 150.0, 90.0)):
    row["step_time_median_s"], row["step_time_vs_dense"] = ms / 1000, ms / 100
  return brainformer_experiment.add_convergence(summary)


def test_steps_to_reach_is_the_first_eval_at_or_below_the_target():
  curve = _curve([3.9, 3.5, 3.6, 3.4], 0.1)
  assert brainformer_experiment.steps_to_reach(curve, 3.5) == 200
  assert brainformer_experiment.steps_to_reach(curve, 3.45) == 400
  assert brainformer_experiment.steps_to_reach(curve, 3.0) is None


def test_convergence_and_step_rate_beside_glam():
  models = _results()["models"]
  brain, glam, dense = models["Brainformer"], models["GLaM E=4"], models["dense"]
  assert brain["steps_to_glam_loss"] == 200 and brain["convergence_vs_glam"] == pytest.approx(2.0)
  assert glam["steps_to_glam_loss"] == 400 and glam["convergence_vs_glam"] == pytest.approx(1.0)
  assert dense["steps_to_glam_loss"] is None and dense["convergence_vs_glam"] is None
  assert brain["steps_per_second"] == pytest.approx(4.0)
  assert glam["steps_per_second"] == pytest.approx(5.0)


def test_table():
  table = brainformer_experiment.format_table(_results())
  assert "Brainformer | 4.00 | 90.0 | 0.90x | 200 (2.00x GLaM)" in table
  assert "dense | 10.00 | 100.0 | 1.00x | not reached" in table
  assert "Brainformer | 2.00M | 1.00M | 3.2000 | -0.4000 | 100 | 2.50x" in table


def _activated_outside_the_embedding(model_gin, bindings) -> int:
  assert models.DecoderOnlyModel  # the model files bind it
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings([model_gin], bindings)
    cfg = dense.TransformerConfig()
  finally:
    gin.clear_config()
  tokens = np.zeros((1, 64), np.int32)
  params = jax.eval_shape(
      lambda: dense.DecoderOnlyLM(cfg).init(jax.random.PRNGKey(0), tokens, tokens)
  )["params"]
  counts = benchmark_train.param_counts(
      params, cfg.tie_embeddings, benchmark_train.transformer_fraction(cfg)
  )
  return counts["params_activated"] - counts["params_input_embedding"]


def test_the_models_have_equal_activated_parameters_outside_the_embedding():
  activated = {
      name: _activated_outside_the_embedding(model_gin, bindings)
      for name, (model_gin, bindings) in brainformer_experiment.VARIANTS.items()
  }
  glam = activated[brainformer_experiment.GLAM]
  assert glam == pytest.approx(1.05e6, rel=0.01)
  for name, count in activated.items():
    assert count == pytest.approx(glam, rel=0.01), name
