"""Stylus's retriever: top-K equals a float64 NumPy cosine ranking; the index file round-trips;
mismatched embedders, dimensions, bad k and damaged files are named."""

import numpy as np
import pytest

from model_zoo.errors import ConfigError, MissingFileError
from trainers.stylus.retriever import AdapterIndex


def _index(seed=0, n=30, dim=12):
  rng = np.random.default_rng(seed)
  names = [f"adapter_{i}" for i in range(n)]
  return AdapterIndex.build(names, [f"about {i}" for i in range(n)], rng.normal(size=(n, dim)), "e")


@pytest.mark.parametrize("k", [1, 5, 30, 50])
def test_top_k_is_numpys_cosine_ranking(k):
  rng = np.random.default_rng(1)
  raw = rng.normal(size=(30, 12))
  index = AdapterIndex.build([f"a{i}" for i in range(30)], ["d"] * 30, raw, "e")
  query = rng.normal(size=12) * 7.0  # the query's norm must not matter
  cosine = raw @ query / (np.linalg.norm(raw, axis=1) * np.linalg.norm(query))
  want = np.argsort(-cosine)[:k]
  got = index.top_k(query, k, "e")
  assert [name for name, _ in got] == [f"a{i}" for i in want]
  np.testing.assert_allclose([s for _, s in got], cosine[want], rtol=1e-5)


def test_the_index_file_round_trips(tmp_path):
  index = _index()
  index.save(str(tmp_path / "index.npz"))
  back = AdapterIndex.load(str(tmp_path / "index.npz"))
  assert back.names == index.names and back.descriptions == index.descriptions
  assert back.embedder == "e"
  np.testing.assert_allclose(back.vectors, index.vectors, rtol=1e-6)  # renormalised
  assert sorted(p.name for p in tmp_path.iterdir()) == ["index.npz"]


def test_mistakes_are_named(tmp_path):
  index = _index()
  with pytest.raises(ConfigError, match="embedded by 'other'"):
    index.top_k(np.ones(12), 3, "other")
  with pytest.raises(ConfigError, match="13 dimensions and the index 12"):
    index.top_k(np.ones(13), 3, "e")
  with pytest.raises(ConfigError, match="k >= 1"):
    index.top_k(np.ones(12), 0, "e")
  with pytest.raises(ConfigError, match="zero or not finite"):
    index.top_k(np.zeros(12), 3, "e")
  with pytest.raises(ConfigError, match="names repeat"):
    AdapterIndex.build(["a", "a"], ["x", "y"], np.ones((2, 3)), "e")
  with pytest.raises(ConfigError, match="one description and one vector"):
    AdapterIndex.build(["a", "b"], ["x"], np.ones((2, 3)), "e")
  with pytest.raises(MissingFileError, match="no adapter index"):
    AdapterIndex.load(str(tmp_path / "none.npz"))
  (tmp_path / "bad.npz").write_bytes(b"not an npz")
  with pytest.raises(ConfigError, match="is damaged"):
    AdapterIndex.load(str(tmp_path / "bad.npz"))
