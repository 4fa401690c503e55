"""LoRA adapters on disk apart from their base model: a small Orbax checkpoint of the lora_a /
lora_b leaves and a card (card.json) saying what they are for.

The card names the base model by a fingerprint of its parameters (their paths, shapes, dtypes
and bytes), so an adapter is never merged into a model it was not trained on. An adapter
directory is written under a temporary name and renamed when complete: a reader sees a whole
adapter or none.
"""

import hashlib
import json
import os
import shutil
from typing import Any, Mapping, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from model_zoo.errors import ConfigError, MissingFileError
from model_zoo.layers import lora

CARD = "card.json"
WEIGHTS = "weights"
CARD_KEYS = ("base_fingerprint", "targets", "rank", "alpha")  # what loading and merging need


def fingerprint(base_params: Any) -> str:
  """sha256 (16 hex digits) of the parameters' '/'-paths, shapes, dtypes and bytes, in path
  order; adapters are excluded, so a base and the same base with adapters agree."""
  digest = hashlib.sha256()
  base, _ = lora.split_adapters(base_params)
  flat = jax.tree_util.tree_flatten_with_path(jax.device_get(base))[0]
  for path, leaf in sorted(((lora.param_path(p), np.asarray(x)) for p, x in flat)):
    digest.update(f"{path}|{leaf.shape}|{leaf.dtype}|".encode())
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()[:16]


def card_for(params: Any, config: lora.LoraConfig, **fields: Any) -> dict[str, Any]:
  """The card of the adapters in `params` (base and adapters): fingerprint, adapted kernels,
  rank and alpha, plus `fields` (training task, steps, eval metrics, sample outputs, a
  description)."""
  _, adapters = lora.split_adapters(params)
  paths = sorted(
      lora.param_path(p).rsplit("/", 1)[0]
      for p, _ in jax.tree_util.tree_flatten_with_path(adapters)[0]
  )
  return {
      "base_fingerprint": fingerprint(params),
      "targets": sorted(set(paths)),
      "rank": config.rank,
      "alpha": config.alpha,
      **fields,
  }


def save(directory: str, adapters: Any, card: Mapping[str, Any]) -> None:
  """Writes the adapters (only lora_a / lora_b leaves) and their card to `directory`, which
  must not exist yet."""
  directory = os.path.abspath(directory)
  missing = [key for key in CARD_KEYS if key not in card]
  if missing:
    raise ConfigError(f"an adapter card needs {list(CARD_KEYS)}; {missing} are missing")
  _, only = lora.split_adapters(adapters)
  if not jax.tree_util.tree_leaves(only):
    raise ConfigError("no lora_a / lora_b parameters to save: is the model a lora_model?")
  if os.path.exists(directory):
    raise ConfigError(f"{directory} exists; remove it or save the adapter under another name")
  tmp = f"{directory}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(tmp, WEIGHTS), jax.device_get(only))
    checkpointer.wait_until_finished()
    checkpointer.close()
    with open(os.path.join(tmp, CARD), "w", encoding="utf-8") as f:
      json.dump(dict(card), f, indent=1, ensure_ascii=False, default=_json_default)
    os.replace(tmp, directory)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _json_default(x):
  if isinstance(x, (np.generic, np.ndarray)):
    return x.tolist()
  raise TypeError(f"{type(x).__name__} in an adapter card is not JSON")


def read_card(directory: str) -> dict[str, Any]:
  """The card of the adapter in `directory` (MissingFileError or ConfigError if it is not a
  whole adapter)."""
  path = os.path.join(directory, CARD)
  if not os.path.isfile(path) or not os.path.isdir(os.path.join(directory, WEIGHTS)):
    raise MissingFileError(
        f"{directory} is not an adapter: it needs {CARD} and {WEIGHTS}/ (written by "
        "trainers.adapters.save)"
    )
  try:
    with open(path, encoding="utf-8") as f:
      card = json.load(f)
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path} is damaged: {e}") from None
  missing = [key for key in CARD_KEYS if key not in card] if isinstance(card, dict) else CARD_KEYS
  if missing:
    raise ConfigError(f"{path} lacks {list(missing)}; it is not an adapter card")
  return card


def load(directory: str, base_params: Optional[Any] = None) -> tuple[Any, dict[str, Any]]:
  """(adapters, card) from `directory`. With `base_params`, refuses an adapter whose card names
  another base model."""
  card = read_card(directory)
  if base_params is not None:
    expected = fingerprint(base_params)
    if card["base_fingerprint"] != expected:
      raise ConfigError(
          f"the adapter in {directory} was trained on base model {card['base_fingerprint']}, "
          f"not on this one ({expected}); use an adapter trained from this checkpoint"
      )
  try:
    adapters = ocp.StandardCheckpointer().restore(os.path.join(directory, WEIGHTS))
  except Exception as e:  # orbax raises many kinds for a damaged checkpoint
    raise ConfigError(f"the adapter weights in {directory} cannot be read: {e}") from None
  return adapters, card
