"""The composer's likelihood score: nats per token of a text under the base model (a NumPy
log-softmax of its logits), and with an adapter merged at its scale; an adapter with B = 0
scores as the base."""

import jax
import numpy as np
import pytest
from flax.core import meta

from model_zoo import dense, models
from model_zoo.errors import ConfigError
from model_zoo.layers import lora
from tests.tiny import tiny_config
from trainers.stylus.scoring import LikelihoodScore


def _encode(text):
  return [2 + (ord(c) % 60) for c in text]


@pytest.fixture(scope="module")
def setup():
  model = models.DecoderOnlyModel(dense.DecoderOnlyLM(tiny_config()))
  tokens = np.ones((1, 8), np.int32)
  batch = {"decoder_input_tokens": tokens, "decoder_target_tokens": tokens}
  params = meta.unbox(model.init(jax.random.PRNGKey(0), batch))
  rng = np.random.default_rng(0)
  flat = lora.flat_params(params)
  kernel = flat["decoder/layers/mlp/wo/kernel"]  # [layers, mlp, embed]
  zero = {
      "decoder": {
          "layers": {
              "mlp": {
                  "wo": {
                      "lora_a": rng.normal(size=(*kernel.shape[:2], 2)).astype(np.float32),
                      "lora_b": np.zeros((kernel.shape[0], 2, kernel.shape[2]), np.float32),
                  }
              }
          }
      }
  }
  live = jax.tree.map(lambda x: x, zero)
  live["decoder"]["layers"]["mlp"]["wo"]["lora_b"] = rng.normal(
      size=(kernel.shape[0], 2, kernel.shape[2])
  ).astype(np.float32)
  score = LikelihoodScore(model, params, {"zero": (zero, 2.0), "live": (live, 2.0)}, _encode, 16)
  return model, params, live, score


def _numpy_nats_per_token(model, params, ids):
  inputs = np.array([[0] + ids[:-1]], np.int32)
  logits = np.asarray(
      model.module.apply({"params": params}, inputs, np.array([ids], np.int32)), np.float64
  )[0]
  top = logits.max(-1, keepdims=True)
  log_probs = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
  return float(np.mean(log_probs[np.arange(len(ids)), ids]))


def test_the_base_score_is_the_mean_log_likelihood_per_token(setup):
  model, params, _, score = setup
  ids = _encode("in German")
  assert score(None, "in German") == pytest.approx(
      _numpy_nats_per_token(model, params, ids), rel=1e-5
  )


def test_an_adapter_scores_with_its_merged_kernel(setup):
  model, params, live, score = setup
  assert score("zero", "fog") == pytest.approx(score(None, "fog"), rel=1e-6)
  merged = lora.merge_weighted(params, [(live, 2.0)])
  assert score("live", "fog") == pytest.approx(
      _numpy_nats_per_token(model, merged, _encode("fog")), rel=1e-5
  )
  assert score("live", "fog") != pytest.approx(score(None, "fog"), rel=1e-4)
  with pytest.raises(ConfigError, match="no adapter named 'nope'"):
    score("nope", "fog")
