"""Weight decay skips norm scales and biases by default, and whatever no_decay_patterns names."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from model_zoo.errors import ConfigError
from tests.trainers import helpers
from trainers import optimizers

LR, WD, STEPS = 0.1, 0.5, 3


@pytest.fixture(scope="module")
def params():
  """The tiny decoder's parameter tree (its real names and shapes), filled with random values."""
  batch = jax.tree.map(jnp.asarray, helpers.synthetic_batch(0))
  shapes = nn.unbox(jax.eval_shape(helpers.tiny_model().init, jax.random.PRNGKey(0), batch))
  rs = np.random.RandomState(0)
  return jax.tree.map(lambda x: jnp.asarray(rs.normal(size=x.shape), x.dtype), shapes)


def _steps_on_zero_gradients(tx, params) -> dict:
  """{path: (before, after)} after STEPS updates whose gradients are all zero: only decay moves."""

  @jax.jit
  def step(state, params):
    updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
    return state, optax.apply_updates(params, updates)

  state, new = tx.init(params), params
  for _ in range(STEPS):
    state, new = step(state, new)
  flat = lambda tree: {
      optimizers.param_path(p): np.asarray(x)
      for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
  }
  before, after = flat(params), flat(new)
  return {path: (before[path], after[path]) for path in before}


def _assert_decay(moved: dict, decayed, factor: float):
  for path, (before, after) in moved.items():
    if decayed(path):
      np.testing.assert_allclose(after, before * factor**STEPS, rtol=1e-6, err_msg=path)
    else:
      np.testing.assert_array_equal(after, before, err_msg=path)


@pytest.mark.parametrize(
    "make, factor",
    [
        # AdamW's decoupled decay is lr * weight_decay * param a step (Adam's step is 0 here).
        (lambda: optimizers.adamw(optimizers.constant_schedule(LR), weight_decay=WD), 1 - LR * WD),
        # Adafactor's weight_decay_rate is not scaled by the learning rate.
        (
            lambda: optimizers.adafactor(optimizers.constant_schedule(LR), weight_decay_rate=WD),
            1 - WD,
        ),
    ],
    ids=["adamw", "adafactor"],
)
def test_kernels_decay_but_norm_scales_do_not_by_default(params, make, factor):
  moved = _steps_on_zero_gradients(make(), params)
  scales = [p for p in moved if p.endswith("/scale")]
  assert "decoder/layers/pre_mlp_norm/scale" in scales and "head/final_norm/scale" in scales
  _assert_decay(moved, lambda path: not path.endswith("/scale"), factor)


def test_no_decay_patterns_choose_what_is_not_decayed(params):
  schedule = optimizers.constant_schedule(LR)
  embedding_only = optimizers.adamw(
      schedule, weight_decay=WD, no_decay_patterns=["^token_embedder/"]
  )
  _assert_decay(
      _steps_on_zero_gradients(embedding_only, params),
      lambda path: not path.startswith("token_embedder/"),
      1 - LR * WD,
  )
  everything = optimizers.adamw(schedule, weight_decay=WD, no_decay_patterns=[])
  _assert_decay(_steps_on_zero_gradients(everything, params), lambda path: True, 1 - LR * WD)


def test_a_no_decay_pattern_that_matches_nothing_is_a_config_error(params):
  tx = optimizers.adamw(optimizers.constant_schedule(LR), no_decay_patterns=["layer_norm/scale"])
  with pytest.raises(ConfigError, match="adamw.no_decay_patterns: 'layer_norm/scale' matches no"):
    tx.init(params)


def test_no_decay_patterns_may_name_frozen_parameters(params):
  # Inside trainable_only the optimizer sees frozen parameters masked out; naming them is
  # still not a typo, and they neither decay nor move.
  tx = optimizers.trainable_only(
      optimizers.adamw(
          optimizers.constant_schedule(LR), weight_decay=WD, no_decay_patterns=["^token_embedder/"]
      ),
      frozen_patterns=["^token_embedder/"],
  )
  _assert_decay(
      _steps_on_zero_gradients(tx, params),
      lambda path: not path.startswith("token_embedder/"),
      1 - LR * WD,
  )
