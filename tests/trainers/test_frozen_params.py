"""trainable_only: frozen parameters stay put and keep no optimizer state; the rest is sharded,
clipped and reported over the trained parameters only."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from model_zoo.errors import ConfigError
from tests.trainers import helpers
from trainers import optimizers, partitioning, trainer

STEPS = 10
FROZEN = ("^token_embedder/", "/self_attention/query/", "^head/final_norm/")


def _is_frozen(path: str) -> bool:
  return (
      path.startswith("token_embedder/") or "self_attention/query" in path or "final_norm" in path
  )


def _trainer(optimizer) -> trainer.Trainer:
  partitioner = partitioning.Partitioner(mesh_shape=(2, 2, 2, 1))  # data, fsdp, tensor
  return trainer.Trainer(
      helpers.tiny_model(), partitioner, optimizer, optimizers.constant_schedule(1e-2)
  )


def _params_by_path(tree) -> dict:
  return {optimizers.param_path(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _statistics(opt_state, field: str) -> dict:
  """{parameter path: leaf} of the optimizer statistic `field` (e.g. Adam's 'mu')."""
  found = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
    names = [getattr(k, "name", None) for k in path]
    if field in names:
      found[optimizers.param_path(path[names.index(field) + 1 :])] = leaf
  return found


@pytest.fixture(scope="module")
def run():
  """10 steps on the (data=2, fsdp=2, tensor=2) mesh with clipped AdamW on the unfrozen params."""
  schedule = optimizers.constant_schedule(1e-2)
  optimizer = optimizers.trainable_only(
      optimizers.with_gradient_clipping(optimizers.adamw(schedule), max_norm=1.0),
      frozen_patterns=FROZEN,
  )
  tr = _trainer(optimizer)
  state = tr.init_state(helpers.shapes_of(helpers.synthetic_batch(0)))
  initial = jax.tree.map(np.array, state.params)  # copied: train_step donates the state
  state, first_metrics = tr.train_step(state, helpers.synthetic_batch(0))
  first_metrics = jax.device_get(first_metrics)
  for i in range(1, STEPS):
    state, _ = tr.train_step(state, helpers.synthetic_batch(i))
  return tr, initial, state, first_metrics


def test_frozen_parameters_stay_bit_identical_while_the_rest_train(run):
  _, initial, state, _ = run
  before, after = _params_by_path(initial), _params_by_path(state.params)
  assert sorted(p for p in before if _is_frozen(p)) == [
      "decoder/layers/self_attention/query/kernel",
      "head/final_norm/scale",
      "token_embedder/embedding",
  ]
  for path, old in before.items():
    new = np.asarray(after[path])
    if _is_frozen(path):
      np.testing.assert_array_equal(new.view(np.uint32), old.view(np.uint32), err_msg=path)
    else:
      assert np.abs(new - old).max() > 1e-4, path


def test_trained_parameters_have_state_sharded_like_them_and_frozen_ones_none(run):
  _, _, state, _ = run
  params = _params_by_path(state.params)
  trained = sorted(p for p in params if not _is_frozen(p))
  for field in ("mu", "nu"):
    stats = _statistics(state.opt_state, field)
    assert sorted(stats) == trained, field
    for path, leaf in stats.items():
      assert leaf.sharding.spec == params[path].sharding.spec, (field, path)
  # The rules, not just "the same as the param": these would be P() if replicated.
  mu = _statistics(state.opt_state, "mu")
  assert mu["decoder/layers/mlp/wi_0/kernel"].sharding.spec == P(None, "fsdp", "tensor")
  assert mu["decoder/layers/self_attention/out/kernel"].sharding.spec == P(
      None, "tensor", None, "fsdp"
  )


def test_adafactor_factored_statistics_are_sharded_like_their_params():
  # min_dim_size_to_factor=4 factors the tiny model's kernels as a big model's would be.
  optimizer = optimizers.trainable_only(
      optax.adafactor(1e-2, min_dim_size_to_factor=4), frozen_patterns=["^token_embedder/"]
  )
  # The abstract state's shardings are the ones init_state creates the arrays in.
  state, _ = _trainer(optimizer).abstract_state(helpers.shapes_of(helpers.synthetic_batch(0)))
  v_row, v_col, v = (_statistics(state.opt_state, f) for f in ("v_row", "v_col", "v"))
  params = _params_by_path(state.params)
  assert sorted(v_row) == sorted(p for p in params if not p.startswith("token_embedder/"))
  # wi_0 kernel [layers=2, embed=32, mlp=64] is P(None, fsdp, tensor): v_row averages over
  # the largest dimension (mlp), v_col over the next (embed).
  wi_0 = "decoder/layers/mlp/wi_0/kernel"
  assert v_row[wi_0].shape == (2, 32) and v_row[wi_0].sharding.spec == P(None, "fsdp")
  assert v_col[wi_0].shape == (2, 64) and v_col[wi_0].sharding.spec == P(None, "tensor")
  assert v[wi_0].shape == (1,) and v[wi_0].sharding.spec == P()  # a factored param's placeholder
  # out kernel [layers=2, heads=4, kv=8, embed=32] is P(None, tensor, None, fsdp).
  out = "decoder/layers/self_attention/out/kernel"
  assert v_row[out].sharding.spec == P(None, "tensor", None)
  assert v_col[out].sharding.spec == P(None, "tensor", "fsdp")
  # A 1-D parameter is not factored: v is shaped like it, v_row and v_col are placeholders.
  norm = "head/final_norm/scale"
  assert v[norm].shape == (32,) and v[norm].sharding.spec == params[norm].sharding.spec
  for placeholder in (v_row[norm], v_col[norm]):
    assert placeholder.shape == (1,) and placeholder.sharding.spec == P()


def test_grad_norm_metric_counts_trained_parameters_only(run):
  tr, initial, _, first_metrics = run
  batch = jax.tree.map(jnp.asarray, helpers.synthetic_batch(0))
  # The tiny model has no dropout, so the step's rng does not change these gradients.
  grads = jax.jit(jax.grad(lambda p: tr.model.loss_fn(p, batch)[0]))(initial)
  grads = {path: np.asarray(g, np.float64) for path, g in _params_by_path(grads).items()}
  trained = np.sqrt(sum(np.sum(g**2) for p, g in grads.items() if not _is_frozen(p)))
  everything = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
  assert everything > 1.05 * trained  # the frozen gradients are not negligible
  assert float(first_metrics["grad_norm"].value()) == pytest.approx(trained, rel=1e-4)


def test_clipping_inside_trainable_only_counts_trained_gradients_only():
  tx = optimizers.trainable_only(
      optimizers.with_gradient_clipping(optax.sgd(1.0), max_norm=1.0), frozen_patterns=["^frozen/"]
  )
  params = {"frozen": {"w": jnp.zeros(4)}, "trained": {"w": jnp.zeros(4)}}
  grads = {"frozen": {"w": jnp.full(4, 100.0)}, "trained": {"w": jnp.full(4, 1.0)}}  # norms 200, 2
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(updates["frozen"]["w"], 0.0)
  np.testing.assert_allclose(updates["trained"]["w"], -0.5, rtol=1e-6)  # 2 clipped to 1


def test_clipping_outside_trainable_only_is_refused():
  frozen = optimizers.trainable_only(optax.sgd(1.0), frozen_patterns=["^frozen/"])
  with pytest.raises(ConfigError, match="trainable_only.optimizer = @with_gradient_clipping"):
    optimizers.with_gradient_clipping(frozen, max_norm=1.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"frozen_patterns": ["decoder/layers_0/"]},  # unscanned name; these layers are scanned
            r"trainable_only.frozen_patterns: 'decoder/layers_0/' matches no parameter path; "
            r"the \d+ paths look like 'decoder/layers/mlp/wi_0/kernel', .*'token_embedder/embedding'",
        ),
        (
            {"trainable_patterns": ["^decoder/", "encoder/"]},
            r"trainable_only.trainable_patterns: 'encoder/' matches no parameter",
        ),
        ({"frozen_patterns": [".*"]}, r"leave no parameter to train"),
        (
            {"frozen_patterns": ["query["]},
            r"trainable_only.frozen_patterns: 'query\[' is not a valid regex",
        ),
    ],
)
def test_bad_patterns_are_config_errors_naming_them(kwargs, message):
  schedule = optimizers.constant_schedule(1e-2)
  with pytest.raises(ConfigError, match=message) as error:
    tr = _trainer(optimizers.trainable_only(optimizers.adamw(schedule), **kwargs))
    tr.abstract_state(helpers.shapes_of(helpers.synthetic_batch(0)))
  # The CLI prints the message less gin's "In call to configurable" lines: one line.
  assert re.search(message, str(error.value).splitlines()[0])
