"""The ASR model: its conv frontend against a NumPy convolution, padding that changes no real
row's output, and KV-cache decoding that equals one full forward."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta
from jax import lax

from model_zoo.asr import frontend, model as asr_model
from tests.tiny import tiny_config

MELS = 12
TOL = dict(rtol=2e-5, atol=2e-5)


def _np_conv_stride2(x, kernel, bias):
  """x [B, H, W, Cin], kernel [3, 3, Cin, Cout]: a 3x3 convolution, stride 2, one zero of
  padding on every side, by direct summation."""
  batch, height, width, _ = x.shape
  out_h, out_w = -(-height // 2), -(-width // 2)
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((batch, out_h, out_w, kernel.shape[-1]))
  for i in range(out_h):
    for j in range(out_w):
      window = padded[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :]
      out[:, i, j] = np.einsum("bhwc,hwco->bo", window, kernel)
  return out + bias


def _np_frontend(params, features, mask):
  x = (features * mask[..., None])[..., None].astype(np.float64)
  for i in range(2):
    conv = params[f"conv_{i}"]
    x = _np_conv_stride2(x, np.asarray(conv["kernel"]), np.asarray(conv["bias"]))
    mask = mask[:, ::2]
    x = np.maximum(x, 0) * mask[:, :, None, None]
  batch, positions = x.shape[:2]
  x = x.reshape(batch, positions, -1) @ np.asarray(params["projection"]["kernel"])
  return x * mask[..., None]


def _features(rng, batch, frames, lengths):
  features = rng.normal(size=(batch, frames, MELS)).astype(np.float32)
  mask = (np.arange(frames)[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)
  return features, mask


def test_the_frontend_equals_a_numpy_convolution_and_subsamples_by_4():
  features, mask = _features(np.random.default_rng(0), 2, 23, [23, 10])
  layer = frontend.ConvSubsampling(emb_dim=16, channels=5)
  params = meta.unbox(layer.init(jax.random.PRNGKey(1), features, mask))["params"]
  params = jax.tree.map(lambda p: p + 0.1, params)  # biases not zero
  out = np.asarray(layer.apply({"params": params}, features, mask))
  assert out.shape == (2, 6, 16)  # ceil(23 / 4)
  np.testing.assert_allclose(out, _np_frontend(params, features, mask), **TOL)
  np.testing.assert_array_equal(frontend.subsampled_mask(mask), [[1] * 6, [1, 1, 1, 0, 0, 0]])


def _model(**overrides):
  cfg = tiny_config(vocab_size=40, **overrides)
  return asr_model.AsrModel(asr_model.SpeechEncoderDecoder(cfg, subsampling_channels=4))


def _batch(rng, frames, lengths, targets):
  features, mask = _features(rng, len(lengths), frames, lengths)
  return {
      "encoder_input_features": features,
      "encoder_input_mask": mask,
      "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
      "decoder_target_tokens": targets,
  }


@functools.lru_cache(maxsize=None)
def _model_and_params(position_encoding):
  model = _model(position_encoding=position_encoding)
  batch = _batch(np.random.default_rng(0), 32, [32, 20], np.ones((2, 6), np.int32))
  return model, meta.unbox(model.init(jax.random.PRNGKey(0), batch))


@pytest.mark.slow
def test_more_padding_changes_no_real_output():
  model, params = _model_and_params("rope")
  rng = np.random.default_rng(3)
  targets = rng.integers(2, 40, size=(2, 6)).astype(np.int32)
  short = _batch(rng, 24, [24, 13], targets)
  long = {k: v for k, v in short.items()}
  long["encoder_input_features"] = np.pad(
      short["encoder_input_features"], ((0, 0), (0, 17), (0, 0)), constant_values=5.0
  )  # padding frames hold garbage: the mask, not their values, must decide
  long["encoder_input_mask"] = np.pad(short["encoder_input_mask"], ((0, 0), (0, 17)))
  logits = [np.asarray(model._logits(params, b)[0]) for b in (short, long)]
  np.testing.assert_allclose(logits[0], logits[1], **TOL)
  # ... while the real frames do matter.
  changed = dict(short, encoder_input_features=short["encoder_input_features"] + 1.0)
  assert not np.allclose(model._logits(params, changed)[0], logits[0], atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("position_encoding", ["rope", "relative_bias"])
def test_cached_decoding_equals_the_full_forward(position_encoding):
  model, params = _model_and_params(position_encoding)
  rng = np.random.default_rng(4)
  targets = rng.integers(2, 40, size=(2, 7)).astype(np.int32)
  batch = _batch(rng, 30, [30, 17], targets)
  full = jax.nn.log_softmax(model._logits(params, batch)[0])

  def stepped(params, batch):
    inputs = model.decode_inputs(params, batch)

    def step(cache, token):
      logits, cache = inputs.tokens_to_logits(token[:, None], cache)
      return cache, jax.nn.log_softmax(logits)

    return lax.scan(step, inputs.cache, jnp.asarray(batch["decoder_input_tokens"]).T)[1]

  steps = jax.jit(stepped)(params, batch).transpose(1, 0, 2)
  np.testing.assert_allclose(steps, full, **TOL)
  # Greedy decoding continues exactly what teacher forcing scores highest at each step.
  tokens, _ = model.predict_batch(
      params, {**batch, "decoder_target_tokens": np.zeros_like(targets)}
  )
  inputs = np.pad(np.asarray(tokens), ((0, 0), (1, 0)))[:, :-1]
  forced = model._logits(
      params,
      {
          **batch,
          "decoder_input_tokens": inputs,
          "decoder_target_tokens": np.maximum(np.asarray(tokens), 1),
      },
  )[0]
  first = np.argmax(np.asarray(forced), -1)
  for row in range(2):
    n = next((i + 1 for i, t in enumerate(tokens[row]) if t == 1), tokens.shape[1])
    np.testing.assert_array_equal(np.asarray(tokens[row][:n]), first[row][:n])
