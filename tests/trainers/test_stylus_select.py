"""Stylus for one prompt: the retrieved adapters go to the composer in retrieval order, minus
those the catalog lacks; a mask's merged kernel is base + sum over keywords of
(w_k / n_k) * (alpha_i / r_i) * A_i B_i (NumPy)."""

import numpy as np
from trainers.stylus import select
from trainers.stylus.catalog import Entry
from trainers.stylus.retriever import AdapterIndex

RNG = np.random.default_rng(0)
BASE = {"p": {"kernel": RNG.normal(size=(4, 6)).astype(np.float32)}}


def _entry(name, rank, alpha):
  weights = {
      "p": {
          "lora_a": RNG.normal(size=(4, rank)).astype(np.float32),
          "lora_b": RNG.normal(size=(rank, 6)).astype(np.float32),
      }
  }
  return Entry(name, weights, {"rank": rank, "alpha": alpha})


CATALOG = {e.name: e for e in (_entry("x", 2, 4.0), _entry("y", 3, 3.0), _entry("z", 1, 0.5))}


def test_a_masks_merged_kernel_divides_each_keywords_weight():
  mask = {"castle": ("x", "y"), "fog": ("y",), "night": ()}
  merged = select.merged_for_mask(BASE, mask, CATALOG, {"castle": 1.0, "fog": 0.5})
  product = {
      n: (e.card["alpha"] / e.card["rank"]) * e.weights["p"]["lora_a"] @ e.weights["p"]["lora_b"]
      for n, e in CATALOG.items()
  }
  want = BASE["p"]["kernel"] + 0.5 * product["x"] + (0.5 + 0.5) * product["y"]
  np.testing.assert_allclose(merged["p"]["kernel"], want, rtol=1e-5, atol=1e-5)
  empty = select.merged_for_mask(BASE, {"night": ()}, CATALOG)
  np.testing.assert_array_equal(empty["p"]["kernel"], BASE["p"]["kernel"])


def test_choose_retrieves_then_composes_among_what_the_catalog_holds():
  names = ["x", "gone", "y", "z"]
  vectors = np.eye(4)
  index = AdapterIndex.build(names, names, vectors, "e")
  query = np.array([0.9, 0.8, 0.7, 0.1])  # retrieval order x, gone, y, z
  table = {(None, "a castle"): -3.0, (None, "fog"): -3.0}
  table.update({("x", "a castle"): -1.0, ("y", "a castle"): -2.0, ("x", "fog"): -3.5})
  table.update({("y", "fog"): -2.5})
  scored = []
  choice = select.choose(
      "a castle, fog",
      index,
      lambda texts: np.stack([query for _ in texts]),
      "e",
      CATALOG,
      lambda adapter, text: scored.append(adapter) or table[(adapter, text)],
      top_k=3,
      per_keyword=1,
  )
  assert choice.keywords == ["a castle", "fog"]
  assert [name for name, _ in choice.retrieved] == ["x", "y"]  # "gone" is not in the catalog
  assert choice.composition.assignment == {"a castle": ["x"], "fog": ["y"]}
  assert choice.why()[0].startswith("retrieved: x (")
  assert set(scored) == {None, "x", "y"}  # z, not retrieved, is never scored
