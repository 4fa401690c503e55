"""A tiny fp32 DecoderOnlyLM shared by the model-level tests (initialised once per session)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax.core import meta

from model_zoo import dense
from model_zoo.config import TransformerConfig
from tests.tiny import tiny_config

TINY = tiny_config(vocab_size=32, emb_dim=16, mlp_dim=32, scan_layers=True, remat_policy="none")


def config(**overrides) -> TransformerConfig:
  return dataclasses.replace(TINY, **overrides)


@functools.lru_cache(maxsize=None)
def _scanned_params(seed: int):
  module = dense.DecoderOnlyLM(TINY)
  tokens = jnp.ones((1, 8), jnp.int32)
  return meta.unbox(jax.jit(module.init)(jax.random.PRNGKey(seed), tokens, tokens))["params"]


def unstack_layers(stacked_params, num_layers):
  """Scanned params (leading 'layers' axis under decoder/layers) -> decoder/layers_{i}."""
  params = dict(stacked_params)
  decoder = dict(params["decoder"])
  layers = decoder.pop("layers")
  for i in range(num_layers):
    decoder[f"layers_{i}"] = jax.tree_util.tree_map(lambda a, i=i: a[i], layers)
  params["decoder"] = decoder
  return params


def params_for(cfg: TransformerConfig, seed: int = 0):
  """The same weights, laid out for cfg.scan_layers (the layer count must be TINY's)."""
  assert cfg.num_layers == TINY.num_layers
  stacked = _scanned_params(seed)
  return stacked if cfg.scan_layers else unstack_layers(stacked, cfg.num_layers)


def decode_token_by_token(module, params, tokens) -> np.ndarray:
  """The logits of decoding `tokens` one at a time through the KV cache."""
  _, variables = module.apply({"params": params}, tokens, tokens, decode=True, mutable=["cache"])
  cache, outs = variables["cache"], []
  for t in range(tokens.shape[1]):
    step = tokens[:, t : t + 1]
    logits, variables = module.apply(
        {"params": params, "cache": cache}, step, step, decode=True, mutable=["cache"]
    )
    cache = variables["cache"]
    outs.append(np.asarray(logits))
  return np.concatenate(outs, axis=1)
