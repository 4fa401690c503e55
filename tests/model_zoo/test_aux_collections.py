"""Sown aux losses and metrics (model_zoo/aux_outputs.py): the loss gets exactly weight * value,
a metric reaches the trainer's step metrics exactly and leaves loss and gradients alone,
with layers scanned or unrolled and with or without microbatches."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from model_zoo import aux_outputs, dense
from model_zoo import metrics as metrics_lib
from tests.trainers import helpers

AUX_VALUE, AUX_WEIGHT, METRIC_VALUE = 0.75, 0.5, 1.25  # exact in fp32, as are their sums
NUM_LAYERS = helpers.TINY.num_layers


def _probed_layer(aux_loss: bool, metric: bool) -> type:
  """A TransformerLayer that sows the known values above; each carries the gradient of the
  layer's mean output (at value 0), so a metric leaking into the loss would change the grads."""

  class Probed(dense.TransformerLayer):

    def __call__(self, x, *args):
      x, out = super().__call__(x, *args)
      mean = jnp.mean(x)
      zero = mean - jax.lax.stop_gradient(mean)
      if aux_loss:
        aux_outputs.sow_aux_loss(self, "balance", AUX_VALUE + zero, weight=AUX_WEIGHT)
      if metric:
        aux_outputs.sow_metric(self, "probe", METRIC_VALUE + zero)
      return x, out

  return Probed


@contextlib.contextmanager
def _layers(layer_cls):
  """The layer class LayerStack builds while the model is traced (None: the real one)."""
  with pytest.MonkeyPatch.context() as patch:
    if layer_cls is not None:
      patch.setattr(dense, "TransformerLayer", layer_cls)
    yield


def _layer_paths(scan: bool) -> list[str]:
  return ["decoder/layers"] if scan else [f"decoder/layers_{i}" for i in range(NUM_LAYERS)]


def _loss_metrics_grads(layer_cls, scan: bool, params, batch):
  model = helpers.tiny_model(scan_layers=scan)
  with _layers(layer_cls):
    grad_fn = jax.jit(jax.value_and_grad(model.loss_fn, has_aux=True))
    (loss, metrics), grads = grad_fn(params, batch, jax.random.PRNGKey(1))
  return np.float32(loss), metrics_lib.values(metrics), jax.device_get(grads)


def _params(scan: bool, batch):
  return helpers.tiny_model(scan_layers=scan).init(jax.random.PRNGKey(0), batch)


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_loss_terms_sum_and_metrics_average_over_layers_and_sows():
  sown = {"decoder": {"layers": {"x": (jnp.array([1.0, 3.0]), jnp.array([2.0, 2.0]))}}}
  assert float(aux_outputs.loss_terms(sown)["decoder/layers/x"]) == 8.0
  assert float(aux_outputs.metric_values(sown)["decoder/layers/x"]) == 2.0
  assert float(aux_outputs.metric_values(sown)["decoder/layers/x/max"]) == 3.0
  one = {"decoder": {"layers_0": {"x": (jnp.array(5.0),)}}}
  assert set(aux_outputs.metric_values(one)) == {"decoder/layers_0/x"}  # one value: no max
  assert aux_outputs.loss_terms({}) == {} and aux_outputs.metric_values({}) == {}


def test_metric_items_report_each_element_with_the_layer_first():
  scanned = jnp.array([[0.25, 0.75], [0.5, 0.5], [1.0, 0.0]])  # [layers, items]
  sown = {"decoder": {"layers": {"load": (scanned, jnp.array([[0.75, 0.25]] * 3))}}}
  got = {k: float(v) for k, v in aux_outputs.metric_items(sown).items()}
  want = {
      f"decoder/layers/load/{layer}/{item}": float(v)
      for (layer, item), v in np.ndenumerate((np.asarray(scanned) + [[0.75, 0.25]]) / 2)
  }
  assert got == want
  assert set(aux_outputs.metric_items({"layers_0": {"load": (jnp.ones(3),)}})) == {
      "layers_0/load/0",
      "layers_0/load/1",
      "layers_0/load/2",
  }


@pytest.mark.parametrize(
    "scan",
    [pytest.param(True, id="scan"), pytest.param(False, id="unrolled", marks=pytest.mark.slow)],
)
def test_the_loss_gets_the_weighted_aux_term_and_a_metric_changes_nothing(scan):
  batch = helpers.synthetic_batch(0)
  params = _params(scan, batch)
  base_loss, base_metrics, base_grads = _loss_metrics_grads(None, scan, params, batch)

  loss, metrics, grads = _loss_metrics_grads(_probed_layer(False, True), scan, params, batch)
  assert loss == base_loss
  _assert_trees_equal(grads, base_grads)
  probes = {f"metrics/{p}/probe": METRIC_VALUE for p in _layer_paths(scan)}
  if scan:  # scan averages its layer axis, and reports the max over it beside
    probes["metrics/decoder/layers/probe/max"] = METRIC_VALUE
  assert metrics == {**base_metrics, **probes}

  loss, metrics, grads = _loss_metrics_grads(_probed_layer(True, True), scan, params, batch)
  term = np.float32(AUX_VALUE * AUX_WEIGHT)
  terms = [term * NUM_LAYERS] if scan else [term] * NUM_LAYERS  # scan sums its layer axis
  expected = base_loss
  for t in terms:
    expected = np.float32(expected + t)
  assert loss == expected
  assert [metrics[f"aux/{p}/balance"] for p in _layer_paths(scan)] == terms
  assert {k: metrics[k] for k in probes} == probes
  changed = [
      not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(base_grads))
  ]
  assert any(changed)  # the aux term's gradient does reach the parameters


def _train(layer_cls, scan: bool, num_microbatches: int, steps: int = 2):
  """(state, the step metrics merged as a log period merges them) after `steps` steps."""
  with _layers(layer_cls):
    tr = helpers.make_trainer(
        num_devices=1,
        num_microbatches=num_microbatches,
        model=helpers.tiny_model(scan_layers=scan),
    )
    state = tr.init_state(helpers.shapes_of(helpers.synthetic_batch(0)))
    merged = {}
    for i in range(steps):
      state, step_metrics = tr.train_step(state, helpers.synthetic_batch(i))
      merged = metrics_lib.merge(merged, step_metrics)
  return state, metrics_lib.values(merged)


@pytest.mark.slow
@pytest.mark.parametrize("num_microbatches", [1, 2])
@pytest.mark.parametrize(
    "scan",
    [pytest.param(True, id="scan"), pytest.param(False, id="unrolled", marks=pytest.mark.slow)],
)
def test_sown_values_reach_the_trainers_metrics_exactly(scan, num_microbatches):
  _, metrics = _train(_probed_layer(True, True), scan, num_microbatches)
  term = AUX_VALUE * AUX_WEIGHT * (NUM_LAYERS if scan else 1)
  for p in _layer_paths(scan):
    assert metrics[f"aux/{p}/balance"] == term
    assert metrics[f"metrics/{p}/probe"] == METRIC_VALUE


@pytest.mark.slow
@pytest.mark.parametrize(
    "scan",
    [pytest.param(True, id="scan"), pytest.param(False, id="unrolled", marks=pytest.mark.slow)],
)
def test_a_metric_leaves_accumulated_gradients_alone(scan):
  base_state, base_metrics = _train(None, scan, num_microbatches=2)
  state, metrics = _train(_probed_layer(False, True), scan, num_microbatches=2)
  _assert_trees_equal(state.params, base_state.params)
  assert metrics["loss"] == base_metrics["loss"]
