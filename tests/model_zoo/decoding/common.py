"""Tiny models, fixed random parameters and NumPy references shared by the decoding tests.

Every reference here is built from plain full forward passes (`Model._logits` on the whole
sequence) and NumPy float64 arithmetic; none of it goes through the KV cache or a decoder.

A generated pad id (0) is an ordinary token to the decoders (the KV cache has no padding
mask), so the reference forwards pass `decoder_target_tokens` of ones: the attention mask is
then purely causal (plus the prefix-LM block), and the logits at position t only depend on
the tokens up to t, whatever the rest of the row holds.
"""

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax.core import meta

from model_zoo import config, dense, models
from model_zoo.decoding import base
from tests.tiny import tiny_config

PAD, EOS = 0, 1

# A 5-token vocabulary (pad 0, EOS 1): small enough to enumerate every output.
V5 = tiny_config(vocab_size=5, emb_dim=16, num_heads=2, num_kv_heads=1, mlp_dim=32)
# 16 tokens, 4 heads over 2 KV heads: shardable over a tensor axis of 2.
V16 = dataclasses.replace(V5, vocab_size=16, num_heads=4, num_kv_heads=2)


@functools.lru_cache(maxsize=None)
def decoder_only(cfg: config.TransformerConfig = V5, **overrides) -> models.DecoderOnlyModel:
  """One model object per configuration, so that compiled functions keyed on it are shared."""
  return models.DecoderOnlyModel(dense.DecoderOnlyLM(dataclasses.replace(cfg, **overrides)))


@functools.lru_cache(maxsize=None)
def encoder_decoder(cfg: config.TransformerConfig = V5, **overrides) -> models.EncoderDecoderModel:
  return models.EncoderDecoderModel(dense.EncoderDecoder(dataclasses.replace(cfg, **overrides)))


@functools.lru_cache(maxsize=None)
def random_params(
    model, seed: int, emb_scale: float = 2.0, eos_scale: float = 1.0, pad_scale: float = 1.0
):
  """Fixed, deterministic parameters drawn with NumPy (no compiled init).

  Embeddings ~ N(0, emb_scale^2) make the tied output logits sharper than uniform (their
  scale is about emb_scale); other kernels ~ N(0, 0.3^2), norm scales near 1. The EOS
  embedding row is scaled by eos_scale, which widens its (tied) logit's spread, so that
  EOS is the likeliest token in some contexts and greedy outputs end at different steps;
  the pad row by pad_scale (a small one keeps the pad logit near 0, rarely the largest).
  Parameter shapes do not depend on the batch shape.
  """
  batch = {
      name: jax.ShapeDtypeStruct((1, 4), jnp.float32 if name == "decoder_rewards" else jnp.int32)
      for name in model.FEATURE_CONVERTER_CLS.required_features
  }
  abstract = meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), batch))
  rs = np.random.RandomState(seed)

  def draw(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    if name == "scale":
      value = 1.0 + 0.1 * rs.standard_normal(leaf.shape)
    elif name == "embedding":
      value = emb_scale * rs.standard_normal(leaf.shape)
      value[EOS] *= eos_scale
      value[PAD] *= pad_scale
    elif name == "rel_embedding":
      value = 0.5 * rs.standard_normal(leaf.shape)
    else:
      value = 0.3 * rs.standard_normal(leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract)


@functools.lru_cache(maxsize=None)
def predict_fn(model, decoder):
  """jit(predict_batch) with every decode returned: (params, batch, rng) -> [B, E, L], [B, E]."""
  return jax.jit(
      lambda params, batch, rng: model.predict_batch(
          params, batch, rng, decoder=decoder, return_all_decodes=True
      )
  )


def predict(model, params, batch, decoder, seed: int = 0):
  sequences, scores = predict_fn(model, decoder)(params, batch, jax.random.PRNGKey(seed))
  return np.asarray(sequences), np.asarray(scores)


def decoder_only_batch(prompts, length: int):
  """A prefix-LM batch (SeqIO's layout) whose inputs part is each row's prompt.

  decoder_input_tokens is [0, prompt..., 0...]; decoder_causal_attention covers the prompt
  plus one position (the shifted inputs), so `decode_inputs` prefills BOS + prompt and the
  row may generate length - len(prompt) tokens.
  Rows without a prompt get no causal-attention feature at all when every row is empty.
  """
  rows = len(prompts)
  inputs = np.zeros((rows, length), np.int32)
  causal = np.zeros((rows, length), np.int32)
  for i, prompt in enumerate(prompts):
    inputs[i, 1 : 1 + len(prompt)] = prompt
    causal[i, : len(prompt) + 1] = 1
  batch = {
      "decoder_input_tokens": inputs,
      "decoder_target_tokens": np.ones((rows, length), np.int32),
  }
  if any(len(p) for p in prompts):
    batch["decoder_causal_attention"] = causal
  return batch


def encoder_decoder_batch(encoder_tokens, length: int):
  rows = len(encoder_tokens)
  return {
      "encoder_input_tokens": np.asarray(encoder_tokens, np.int32),
      "decoder_input_tokens": np.zeros((rows, length), np.int32),
      "decoder_target_tokens": np.zeros((rows, length), np.int32),
  }


def log_softmax(logits) -> np.ndarray:
  x = np.asarray(logits, np.float64)
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def shift_right(targets: np.ndarray) -> np.ndarray:
  return np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)


@functools.lru_cache(maxsize=None)
def jitted_logits(model):
  return jax.jit(lambda params, batch: model._logits(params, batch)[0])


def full_forward_log_probs(model, params, batch, targets: np.ndarray) -> np.ndarray:
  """Float64 log-probs [rows, L, V] of a full forward over `targets` (the sequences so far).

  `batch` supplies the other features (encoder inputs, the prefix-LM causal attention);
  the decoder inputs are `targets` shifted right, the padding mask is all ones. Rows are
  padded to a multiple of 32 (copies of row 0) so that few shapes get compiled.
  """
  targets = np.asarray(targets, np.int32)
  rows = len(targets)
  full = {k: np.asarray(v) for k, v in batch.items() if k not in ("decoder_loss_weights",)}
  full["decoder_input_tokens"] = shift_right(targets)
  full["decoder_target_tokens"] = np.ones_like(targets)
  padded_rows = -(-rows // 32) * 32
  full = {
      k: np.concatenate([v, np.repeat(v[:1], padded_rows - rows, axis=0)]) for k, v in full.items()
  }
  return log_softmax(jitted_logits(model)(params, full))[:rows]


def sequence_log_probs(model, params, batch, targets, start, stop) -> np.ndarray:
  """sum_{start <= t < stop} log p(targets[t] | targets[:t]) per row, by a full forward."""
  lp = full_forward_log_probs(model, params, batch, targets)
  targets = np.asarray(targets)
  token_lp = np.take_along_axis(lp, targets[..., None], axis=-1)[..., 0]
  t = np.arange(targets.shape[1])[None, :]
  inside = (t >= np.asarray(start)[:, None]) & (t < np.asarray(stop)[:, None])
  return np.sum(np.where(inside, token_lp, 0.0), axis=1)


def generated_length(continuation: np.ndarray) -> np.ndarray:
  """Tokens generated per row of [rows, M] continuations: up to and including the first EOS."""
  continuation = np.asarray(continuation)
  is_eos = continuation == EOS
  first = np.where(is_eos.any(axis=-1), is_eos.argmax(axis=-1) + 1, continuation.shape[-1])
  return first


def greedy_reference(model, params, batch, num_forced, length: int, step_log_probs=None):
  """A NumPy greedy loop: at each step a full forward over the sequence so far, then argmax.

  Row b's first num_forced[b] target tokens are its prompt (taken from the batch's
  decoder_input_tokens); then it takes the argmax until EOS and is 0 afterwards.
  Returns the continuations [rows, length] (prompt removed, 0-padded) and the summed
  log-probs of the generated tokens. `step_log_probs(targets) -> [rows, L, V]` replaces
  the model's log-probs (shallow fusion).
  """
  rows = len(num_forced)
  num_forced = np.asarray(num_forced)
  if step_log_probs is None:
    step_log_probs = lambda targets: full_forward_log_probs(model, params, batch, targets)
  targets = np.zeros((rows, length), np.int32)
  if "decoder_causal_attention" in batch:
    inputs = np.asarray(batch["decoder_input_tokens"])
    for b in range(rows):
      targets[b, : num_forced[b]] = inputs[b, 1 : 1 + num_forced[b]]
  done = np.zeros(rows, bool)
  scores = np.zeros(rows)
  for t in range(length):
    if done.all():
      break
    lp = step_log_probs(targets)[:, t]
    for b in range(rows):
      if t < num_forced[b] or done[b]:
        continue
      token = int(np.argmax(lp[b]))
      targets[b, t] = token
      scores[b] += lp[b, token]
      done[b] = token == EOS
  continuations = np.zeros_like(targets)
  for b in range(rows):
    continuations[b, : length - num_forced[b]] = targets[b, num_forced[b] :]
  return continuations, scores


def all_continuations(vocab_size: int, max_length: int) -> np.ndarray:
  """Every output of at most max_length tokens: ends at its first EOS or runs to max_length.

  Returns [count, max_length] int32, 0-padded after EOS.
  """
  others = [v for v in range(vocab_size) if v != EOS]
  out = []
  for n in range(max_length):  # EOS at position n
    for prefix in itertools.product(others, repeat=n):
      out.append(list(prefix) + [EOS] + [0] * (max_length - n - 1))
  for seq in itertools.product(others, repeat=max_length):
    out.append(list(seq))
  return np.asarray(out, np.int32)


def length_penalty(length, alpha: float):
  return ((5.0 + np.asarray(length, np.float64)) / 6.0) ** alpha


def table_inputs(logits, rows_per_example: int) -> base.DecodeInputs:
  """A model without a network, for hand-built cases: a fixed table of logits [B, L, V, V].

  Every row of example b (rows_per_example each) starts from BOS (0) and may generate L
  tokens; at generated position t after input token `previous` its step gives
  logits[b, t, previous], so a table entry is exactly one step's distribution.
  """
  table = jnp.asarray(logits, jnp.float32)
  examples, length = table.shape[:2]
  rows = examples * rows_per_example
  example = jnp.arange(rows) // rows_per_example

  def tokens_to_logits(token, position):
    return table[example, jnp.minimum(position, length - 1), token[:, 0]], position + 1

  return base.DecodeInputs(
      tokens_to_logits=tokens_to_logits,
      cache=jnp.zeros((rows,), jnp.int32),
      first_token=jnp.zeros((rows,), jnp.int32),
      max_new_tokens=jnp.full((rows,), length, jnp.int32),
      length=length,
      reorder_cache=lambda position, index: jnp.take(position, index, axis=0),
  )


# --- shared setups (one model, batch and parameter set each, so compilations are shared) ------
PROMPTS = [[2, 3], [5], [7, 8, 9, 4], [], [11, 12, 13], [6], [9, 9], [14, 2, 3]]
LM_LENGTH = 8
ED_LENGTH = 6


def lm16(num_layers: int = 2):
  """A 16-token decoder-only LM and a prefix-LM batch with 8 right-padded prompts."""
  model = decoder_only(V16, num_layers=num_layers)
  params = random_params(model, 23, emb_scale=1.0, pad_scale=0.1)
  return model, decoder_only_batch(PROMPTS, LM_LENGTH), params


def ed16():
  """A 16-token encoder-decoder and 8 rows of ragged encoder inputs."""
  model = encoder_decoder(V16)
  encoder = np.random.RandomState(7).randint(2, 16, size=(8, 5)).astype(np.int32)
  encoder[np.arange(5)[None, :] >= np.array([5, 3, 5, 1, 4, 5, 2, 5])[:, None]] = 0
  params = random_params(model, 24, emb_scale=1.0, eos_scale=2.0, pad_scale=0.1)
  return model, encoder_decoder_batch(encoder, ED_LENGTH), params
