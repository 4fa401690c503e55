"""Adapters on disk: saved alone and read back bit-for-bit with their card; the base model's
fingerprint tells bases apart and ignores adapters; a wrong base, a damaged or partial
adapter and an existing directory are named; a failed save leaves nothing behind."""

import functools
import json
import os

import jax
import numpy as np
import pytest
from flax.core import meta

from model_zoo import dense, lora as lora_models, models
from model_zoo.errors import ConfigError, MissingFileError
from model_zoo.layers import lora
from tests.tiny import tiny_config
from trainers import adapters

CONFIG = lora.LoraConfig(rank=2, alpha=4.0, target_patterns=(r"attention/(query|value)/kernel$",))


@functools.lru_cache(maxsize=None)
def adapted_params():
  """The tiny LM's parameters with adapters on query and value, B drawn at random."""
  model = lora_models.lora_model(
      models.DecoderOnlyModel(dense.DecoderOnlyLM(tiny_config())), CONFIG
  )
  tokens = np.ones((1, 8), np.int32)
  batch = {"decoder_input_tokens": tokens, "decoder_target_tokens": tokens}
  tree = meta.unbox(model.init(jax.random.PRNGKey(0), batch))
  flat = lora.flat_params(tree)
  rng = np.random.default_rng(0)
  for path, x in flat.items():
    if path.endswith("lora_b"):
      flat[path] = rng.normal(size=x.shape).astype(np.float32)
  return lora.nested_params(flat)


@pytest.fixture(scope="module")
def params():
  return adapted_params()


def test_an_adapter_reads_back_bit_for_bit_with_its_card(params, tmp_path):
  card = adapters.card_for(params, CONFIG, task="kjv_genesis_lm", steps=3, description="")
  adapters.save(str(tmp_path / "a"), params, card)
  loaded, read = adapters.load(str(tmp_path / "a"), params)
  _, want = lora.split_adapters(params)
  assert lora.flat_params(loaded).keys() == lora.flat_params(want).keys()
  for path, x in lora.flat_params(want).items():
    np.testing.assert_array_equal(lora.flat_params(loaded)[path], x, err_msg=path)
  assert read == json.loads(json.dumps(card))
  assert read["targets"] == [
      "decoder/layers/self_attention/query",
      "decoder/layers/self_attention/value",
  ]
  assert sorted(os.listdir(tmp_path)) == ["a"]  # no temporary directory left


def test_the_fingerprint_tells_bases_apart_and_ignores_adapters(params):
  base, _ = lora.split_adapters(params)
  assert adapters.fingerprint(params) == adapters.fingerprint(base)
  flat = lora.flat_params(base)
  flat["decoder/layers/mlp/wo/kernel"] = np.array(flat["decoder/layers/mlp/wo/kernel"])
  flat["decoder/layers/mlp/wo/kernel"][0, 0, 0] += 1e-6
  assert adapters.fingerprint(lora.nested_params(flat)) != adapters.fingerprint(base)


def test_an_adapter_of_another_base_is_refused(params, tmp_path):
  adapters.save(str(tmp_path / "a"), params, adapters.card_for(params, CONFIG))
  other = jax.tree.map(lambda x: x + 1, lora.split_adapters(params)[0])
  with pytest.raises(ConfigError, match="was trained on base model .* not on this one"):
    adapters.load(str(tmp_path / "a"), other)


def test_damaged_or_partial_adapters_and_existing_directories_are_named(params, tmp_path):
  card = adapters.card_for(params, CONFIG)
  with pytest.raises(MissingFileError, match="is not an adapter"):
    adapters.read_card(str(tmp_path / "nothing"))
  adapters.save(str(tmp_path / "a"), params, card)
  with pytest.raises(ConfigError, match="exists"):
    adapters.save(str(tmp_path / "a"), params, card)
  (tmp_path / "a" / adapters.CARD).write_text("{not json")
  with pytest.raises(ConfigError, match="is damaged"):
    adapters.read_card(str(tmp_path / "a"))
  (tmp_path / "a" / adapters.CARD).write_text(json.dumps({"rank": 2}))
  with pytest.raises(ConfigError, match="lacks"):
    adapters.read_card(str(tmp_path / "a"))
  with pytest.raises(ConfigError, match="missing"):
    adapters.save(str(tmp_path / "b"), params, {"rank": 2})
  base, _ = lora.split_adapters(params)
  with pytest.raises(ConfigError, match="no lora_a / lora_b"):
    adapters.save(str(tmp_path / "b"), base, card)


def test_a_failed_save_leaves_nothing(params, tmp_path, monkeypatch):
  def broken(*args, **kwargs):
    raise OSError("disk full")

  monkeypatch.setattr(adapters.json, "dump", broken)
  with pytest.raises(OSError, match="disk full"):
    adapters.save(str(tmp_path / "a"), params, adapters.card_for(params, CONFIG))
  assert os.listdir(tmp_path) == []
