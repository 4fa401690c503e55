"""A catalog with good, damaged, partial and foreign adapters loads the good ones and skips
each of the others with a warning that says why."""

import json
import logging
import shutil

import jax
import numpy as np
import pytest

from model_zoo.errors import MissingFileError
from model_zoo.layers import lora
from tests.trainers.test_adapters import CONFIG, adapted_params
from trainers import adapters
from trainers.stylus.catalog import load_catalog


def test_bad_entries_are_skipped_with_why(tmp_path, caplog):
  params = adapted_params()
  card = adapters.card_for(params, CONFIG)
  for name in ("good", "bad_card", "no_weights", "foreign"):
    adapters.save(str(tmp_path / name), params, card)
  (tmp_path / "bad_card" / adapters.CARD).write_text("{")
  shutil.rmtree(tmp_path / "no_weights" / adapters.WEIGHTS)
  foreign = dict(card, base_fingerprint="0123456789abcdef")
  (tmp_path / "foreign" / adapters.CARD).write_text(json.dumps(foreign))
  (tmp_path / "notes.txt").write_text("not an adapter")
  with caplog.at_level(logging.WARNING):
    entries, skipped = load_catalog(str(tmp_path), params)
  assert list(entries) == ["good"]
  assert sorted(skipped) == ["bad_card", "foreign", "no_weights"]
  assert "is damaged" in skipped["bad_card"]
  assert "is not an adapter" in skipped["no_weights"]
  assert "trained on base model 0123456789abcdef" in skipped["foreign"]
  assert sum("Skipping adapter" in r.message for r in caplog.records) == 3
  good = entries["good"]
  assert good.scale == CONFIG.alpha / CONFIG.rank
  want = lora.split_adapters(params)[1]
  for path, x in lora.flat_params(want).items():
    np.testing.assert_array_equal(lora.flat_params(good.weights)[path], x)
  assert jax.tree.structure(good.weights) == jax.tree.structure(want)
  with pytest.raises(MissingFileError, match="no adapter catalog"):
    load_catalog(str(tmp_path / "none"))
