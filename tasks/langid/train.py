"""Trains the LangID model on the corpus's train texts, once per corpus and config.

Minibatch Adam on softmax cross-entropy, jit-compiled, deterministic given the config's
seed. The trained params are cached as .npz under `cache_dir("langid")`, keyed by the
corpus fingerprint and every hyper-parameter, so tests and tools train once.
"""

import dataclasses
import hashlib
import io
import json
import os
import pathlib

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax

from model_zoo.errors import ConfigError
from tasks import cache
from tasks.langid import data, features, model
from tasks.parallel import corpus


def cache_path(config: model.LangIdConfig) -> pathlib.Path:
  key = json.dumps(
      {"corpus": corpus.fingerprint(), "features": features.VERSION, **dataclasses.asdict(config)},
      sort_keys=True,
  )
  return cache.cache_dir("langid") / f"langid_{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def train(config: model.LangIdConfig, examples: list[tuple[str, str]]) -> model.LangIdModel:
  """A model trained on (text, language) pairs for `config.epochs` shuffled passes.

  Each epoch drops its last partial batch (so every step has one shape); reshuffling puts
  those texts in other batches in other epochs.
  """
  for _, lang in examples:
    corpus.check_language(lang)
  if len(examples) < config.batch_size:
    raise ConfigError(
        f"LangID training needs at least batch_size={config.batch_size} examples; "
        f"got {len(examples)}. Lower LangIdConfig.batch_size."
    )
  ids = model.featurize([text for text, _ in examples], config)
  labels = np.asarray([corpus.LANGUAGES.index(lang) for _, lang in examples], np.int32)
  module = model.classifier(config)
  init_key = jax.random.PRNGKey(config.seed)
  dummy_ids, dummy_segments = features.pack([np.zeros(1, np.int32)], config.batch_size)
  params = module.init(init_key, dummy_ids, dummy_segments, config.batch_size)["params"]
  optimizer = optax.adam(config.learning_rate)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, ids, segments, labels):
    def loss_fn(params):
      logits = module.apply({"params": params}, ids, segments, config.batch_size)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    updates, opt_state = optimizer.update(jax.grad(loss_fn)(params), opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  rng = np.random.default_rng(config.seed)
  for _ in range(config.epochs):
    order = rng.permutation(len(examples))
    for start in range(0, len(order) - config.batch_size + 1, config.batch_size):
      batch = order[start : start + config.batch_size]
      packed_ids, segments = features.pack([ids[i] for i in batch], config.batch_size)
      params, opt_state = step(params, opt_state, packed_ids, segments, labels[batch])
  return model.LangIdModel(config, jax.device_get(params))


def save(langid: model.LangIdModel, path: str | os.PathLike) -> None:
  flat = traverse_util.flatten_dict(langid.params, sep="/")
  buffer = io.BytesIO()
  np.savez(buffer, **{k: np.asarray(v) for k, v in flat.items()})
  cache.atomic_write(path, buffer.getvalue())


def load(path: str | os.PathLike, config: model.LangIdConfig) -> model.LangIdModel:
  with np.load(path) as arrays:
    flat = {k: jnp.asarray(arrays[k]) for k in arrays.files}
  return model.LangIdModel(config, traverse_util.unflatten_dict(flat, sep="/"))


def load_or_train(config: model.LangIdConfig = model.LangIdConfig()) -> model.LangIdModel:
  """The model for this corpus and config: from the cache, or trained on the corpus and cached."""
  path = cache_path(config)
  if path.exists():
    return load(path, config)
  langid = train(config, data.training_examples())
  save(langid, path)
  return langid
