"""Named rng streams (Model.rng_streams): every layer and step draws its own key, a resumed run
draws what the uninterrupted one drew, and eval, scoring and decoding pass no rngs."""

import contextlib

import flax
import gin
import jax
import numpy as np
import pytest

from model_zoo import aux_outputs, dense, models
from model_zoo import metrics as metrics_lib
from model_zoo.errors import ConfigError
from tests.tiny import tiny_config
from tests.trainers import helpers
from trainers import checkpoints

STREAMS = ("dropout", "noise")


class _Noisy(dense.TransformerLayer):
  """Shifts its output by a draw from the "noise" stream when training, and reports the draw."""

  def __call__(self, x, *args):
    x, out = super().__call__(x, *args)
    if self.deterministic:
      return x, out
    noise = jax.random.uniform(self.make_rng("noise"), ())
    self.sow("intermediates", "noise", noise)
    aux_outputs.sow_metric(self, "noise", noise)
    return x + 0.1 * noise, out


class _Greedy(dense.TransformerLayer):
  """Breaks the contract: draws from "noise" even when deterministic."""

  def __call__(self, x, *args):
    x, out = super().__call__(x, *args)
    return x + jax.random.uniform(self.make_rng("noise"), ()), out


@contextlib.contextmanager
def _layers(layer_cls):
  """The layer class LayerStack builds while the model is traced."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(dense, "TransformerLayer", layer_cls)
    yield


def _model(scan: bool = True, **kwargs) -> models.DecoderOnlyModel:
  return models.DecoderOnlyModel(
      dense.DecoderOnlyLM(tiny_config(scan_layers=scan)), **{"rng_streams": STREAMS, **kwargs}
  )


def _noise_metrics(metrics) -> dict[str, float]:
  return {k: v for k, v in metrics_lib.values(metrics).items() if k.endswith("/noise")}


@pytest.mark.parametrize(
    "scan",
    [pytest.param(True, id="scan"), pytest.param(False, id="unrolled", marks=pytest.mark.slow)],
)
def test_each_layer_draws_its_own_noise(scan):
  model, batch = _model(scan), helpers.synthetic_batch(0)
  with _layers(_Noisy):
    params = model.init(jax.random.PRNGKey(0), batch)
    _, state = model.module.apply(
        {"params": params},
        batch["decoder_input_tokens"],
        batch["decoder_target_tokens"],
        deterministic=False,
        rngs=model.stream_rngs(jax.random.PRNGKey(1)),
        mutable=["intermediates"],
    )
  draws = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state["intermediates"])])
  assert len(draws) == helpers.TINY.num_layers
  assert len(set(draws.tolist())) == len(draws)


def test_adding_a_stream_leaves_the_others_draws_alone():
  rng = jax.random.PRNGKey(3)
  alone = _model(rng_streams=("dropout",)).stream_rngs(rng)
  both = _model(rng_streams=("noise", "dropout")).stream_rngs(rng)
  np.testing.assert_array_equal(alone["dropout"], both["dropout"])
  assert not np.array_equal(both["noise"], both["dropout"])


def _run(tr, state, first: int, last: int):
  """Trains on batches first..last-1; returns the state and each step's noise metrics."""
  draws = []
  for i in range(first, last):
    state, metrics = tr.train_step(state, helpers.synthetic_batch(i))
    draws.append(_noise_metrics(metrics))
  return state, draws


@pytest.mark.parametrize(
    "scan",
    [pytest.param(True, id="scan"), pytest.param(False, id="unrolled", marks=pytest.mark.slow)],
)
def test_draws_follow_the_step_and_replay_after_a_resume(scan, tmp_path):
  shapes = helpers.shapes_of(helpers.synthetic_batch(0))
  with _layers(_Noisy):
    straight = helpers.make_trainer(num_devices=1, model=_model(scan))
    state, draws = _run(straight, straight.init_state(shapes), 0, 4)

    first = helpers.make_trainer(num_devices=1, model=_model(scan))
    saved, _ = _run(first, first.init_state(shapes), 0, 2)
    ckpt = checkpoints.Checkpointer(str(tmp_path))
    ckpt.save(saved, {"train_batches": 2})
    ckpt.close()

    second = helpers.make_trainer(num_devices=1, model=_model(scan))
    restored, _ = checkpoints.Checkpointer(str(tmp_path)).restore_latest(
        second.abstract_state(shapes)[0]
    )
    resumed, replayed = _run(second, restored, 2, 4)

  names = (
      ["metrics/decoder/layers/noise"]
      if scan
      else [f"metrics/decoder/layers_{i}/noise" for i in range(helpers.TINY.num_layers)]
  )
  assert all(sorted(d) == names for d in draws)
  values = [v for d in draws for v in d.values()]
  assert len(set(values)) == len(values)  # per step (and per layer when unrolled)
  assert replayed == draws[2:]
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(state.params), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_eval_scoring_and_decoding_pass_no_rngs():
  batch = helpers.synthetic_batch(0)
  with _layers(_Noisy):  # keeps the contract: draws only when training
    tr = helpers.make_trainer(num_devices=1, model=_model())
    state = tr.init_state(helpers.shapes_of(batch))
    state, metrics = tr.train_step(state, batch)
    assert _noise_metrics(metrics)
    assert not _noise_metrics(tr.eval_step(state, batch))
    tr.model.predict_batch(state.params, batch)

  with _layers(_Greedy):
    model = _model()
    params = model.init(jax.random.PRNGKey(0), batch)
    model.loss_fn(params, batch, jax.random.PRNGKey(1))  # training has the stream
    for no_rng in (
        lambda: model.loss_fn(params, batch),
        lambda: model.score_batch(params, batch),
        lambda: model.predict_batch(params, batch),
    ):
      with pytest.raises(flax.errors.InvalidRngError, match="noise"):
        no_rng()


def test_a_stream_must_be_configured():
  batch = helpers.synthetic_batch(0)
  with _layers(_Noisy):
    model = _model(rng_streams=("dropout",))
    params = model.init(jax.random.PRNGKey(0), batch)
    with pytest.raises(flax.errors.InvalidRngError, match="noise"):
      model.loss_fn(params, batch, jax.random.PRNGKey(1))

  gin.parse_config(f"DecoderOnlyModel.rng_streams = {STREAMS!r}")
  assert models.DecoderOnlyModel(dense.DecoderOnlyLM(tiny_config())).rng_streams == STREAMS


@pytest.mark.parametrize(
    "streams, overrides",
    [(("params",), {}), (("noise", "noise"), {}), (("noise",), {"dropout_rate": 0.1})],
    ids=["params", "twice", "dropout-missing"],
)
def test_rng_stream_mistakes_are_config_errors(streams, overrides):
  with pytest.raises(ConfigError, match="rng_streams"):
    models.DecoderOnlyModel(dense.DecoderOnlyLM(tiny_config(**overrides)), rng_streams=streams)
