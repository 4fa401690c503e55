"""Stylus's refiner: salient words by a brute-force count, the refined description's parts
from the card, and the index built from the refined descriptions, one row per adapter."""

import numpy as np

from trainers.stylus import refiner

OUTPUTS = ["Und Gott sprach: Es werde Licht", "und es ward Licht.", "Gott sah das Licht, 12 Mal"]


def test_salient_words_are_the_most_frequent_words():
  words = [w.casefold() for t in OUTPUTS for w in t.replace(":", " ").replace(",", " ").split()]
  words = [w.strip(".") for w in words if len(w.strip(".")) >= 3 and w.strip(".").isalpha()]
  counts = {w: words.count(w) for w in words}
  order = sorted(dict.fromkeys(words), key=lambda w: -counts[w])  # stable: first use
  assert refiner.salient_words(OUTPUTS, 3) == order[:3] == ["licht", "und", "gott"]
  assert refiner.salient_words([], 3) == []


def test_the_refined_description_comes_from_the_card():
  card = {
      "task": "catalog_lm_de",
      "sample_outputs": [{"prompt": "", "output": o} for o in OUTPUTS],
      "description": "my adapter v2",
  }
  text = refiner.refine(
      card, lambda task: f"language model of {task[-2:]} text", lambda outs: "German", words=2
  )
  assert text == (
      "language model of de text. writes German. words such as licht, und. my adapter v2"
  )
  bare = refiner.refine({"task": "flan_langid"}, lambda task: "language identification")
  assert bare == "language identification"


def test_the_index_holds_each_adapters_refined_description():
  cards = {"b": {"task": "t2"}, "a": {"task": "t1"}}
  calls = []

  def embed(texts):
    calls.append(list(texts))
    return np.array([[1.0, len(t)] for t in texts])

  index = refiner.build_index(cards, lambda card: f"about {card['task']}", embed, "e")
  assert index.names == ("a", "b") and index.descriptions == ("about t1", "about t2")
  assert calls == [["about t1", "about t2"]] and index.embedder == "e"
  np.testing.assert_allclose(index.vectors[0], np.array([1.0, 8.0]) / np.hypot(1, 8), rtol=1e-6)
