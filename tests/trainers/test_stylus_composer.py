"""Stylus's composer: keywords split at the separators; per keyword the top-k adapters by
likelihood gain over the base (checked against a brute-force choice over all subsets), none
below the margin; adapters that fit no keyword rejected, with why."""

import itertools

import numpy as np
import pytest

from model_zoo.errors import ConfigError
from trainers.stylus import composer


def test_keywords_split_at_commas_and_conjunctions():
  assert composer.split_keywords("a castle on a hill, at night and in fog; then rain") == [
      "a castle on a hill",
      "at night",
      "in fog",
      "rain",
  ]
  assert composer.split_keywords("translate to German") == ["translate to German"]
  assert composer.split_keywords("fog, fog") == ["fog"]
  with pytest.raises(ConfigError, match="empty"):
    composer.split_keywords(" , ")


def _brute_force(gains, k, margin):
  """The subset of size <= k of the adapters with gain > margin that has the largest total
  gain (the best k of them), as a set."""
  fitting = [a for a, g in gains.items() if g > margin]
  best = max(
      (s for r in range(min(k, len(fitting)) + 1) for s in itertools.combinations(fitting, r)),
      key=lambda s: (len(s), sum(gains[a] for a in s)),
  )
  return set(best)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k,margin", [(1, 0.0), (2, 0.0), (3, 0.1)])
def test_each_keyword_keeps_its_best_k_fitting_adapters(seed, k, margin):
  rng = np.random.default_rng(seed)
  keywords, candidates = ["x", "y", "z"], [f"a{i}" for i in range(6)]
  table = {(None, w): float(rng.normal()) for w in keywords}
  table.update({(a, w): float(rng.normal()) for a in candidates for w in keywords})
  result = composer.compose(keywords, candidates, composer.table_score(table), k, margin)
  for w in keywords:
    gains = {a: table[(a, w)] - table[(None, w)] for a in candidates}
    assert set(result.assignment[w]) == _brute_force(gains, k, margin)
    kept_gains = [gains[a] for a in result.assignment[w]]
    assert kept_gains == sorted(kept_gains, reverse=True)
  kept = {a for v in result.assignment.values() for a in v}
  assert set(result.rejected) == set(candidates) - kept


def test_the_right_adapter_is_chosen_and_the_others_explained():
  table = {
      (None, "in German"): -5.0,
      ("german", "in German"): -2.0,
      ("french", "in German"): -4.9,
      ("genesis", "in German"): -6.0,
      (None, "like Genesis"): -4.0,
      ("german", "like Genesis"): -4.5,
      ("french", "like Genesis"): -4.2,
      ("genesis", "like Genesis"): -1.0,
  }
  result = composer.compose(
      ["in German", "like Genesis"],
      ["german", "french", "genesis"],
      composer.table_score(table),
      per_keyword=1,
  )
  assert result.assignment == {"in German": ["german"], "like Genesis": ["genesis"]}
  assert result.rejected == ["french"]
  why = result.why()
  assert "'in German': german (+3.000 nats/token)" in why[0]
  assert why[-1] == "rejected french: kept for no keyword (best gain +0.100 nats/token)"
  with pytest.raises(ConfigError, match="k=0 < 1"):
    composer.compose(["x"], ["a"], composer.table_score(table), per_keyword=0)


def test_an_adapter_that_does_not_raise_the_likelihood_is_no_fit():
  table = {(None, "x"): -1.5, ("same", "x"): -1.5, ("worse", "x"): -2.0}
  result = composer.compose(["x"], ["same", "worse"], composer.table_score(table))
  assert result.assignment == {"x": []} and result.rejected == ["same", "worse"]
  assert result.why()[0] == "'x': no adapter fits; the base model"
