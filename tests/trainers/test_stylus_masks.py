"""Stylus's masks against a brute-force enumeration of the scheme (per keyword: one of its
adapters, all of them, or none; distinct masks only), the sampler within that set, and the
merge weights divided per keyword."""

import itertools

import pytest

from model_zoo.errors import ConfigError
from trainers.stylus import masks

ASSIGNMENT = {"castle": ["gothic", "stone", "fog"], "horse": ["pony"], "night": ["moon", "dark"]}


def _brute_force(assignment):
  """Every subset of each keyword's adapters that is empty, a single one or all of them,
  crossed over keywords; as a set of hashable masks."""
  per_keyword = []
  for adapters in assignment.values():
    subsets = {
        frozenset(s)
        for r in range(len(adapters) + 1)
        for s in itertools.combinations(adapters, r)
        if r in (0, 1, len(adapters))
    }
    per_keyword.append(subsets)
  return {tuple(zip(assignment, picks)) for picks in itertools.product(*per_keyword)}


def _as_set(mask_list):
  return [tuple((k, frozenset(v)) for k, v in m.items()) for m in mask_list]


@pytest.mark.parametrize(
    "assignment",
    [ASSIGNMENT, {"a": ["x"]}, {"a": ["x", "y"], "b": ["x", "z"]}, {"a": []}],
)
def test_the_masks_are_the_schemes_distinct_masks(assignment):
  got = _as_set(masks.all_masks(assignment))
  assert len(got) == len(set(got))  # distinct
  assert set(got) == _brute_force(assignment)


def test_the_mask_count_is_the_product_of_choices():
  # castle: 3 single + all + none = 5; horse: 1 + none = 2; night: 2 + all + none = 4
  assert len(masks.all_masks(ASSIGNMENT)) == 5 * 2 * 4


def test_samples_come_from_the_scheme_and_cover_it():
  every = set(_as_set(masks.all_masks(ASSIGNMENT)))
  drawn = _as_set(masks.sample_masks(ASSIGNMENT, 2000, seed=0))
  assert set(drawn) == every
  assert masks.sample_masks(ASSIGNMENT, 5, seed=3) == masks.sample_masks(ASSIGNMENT, 5, seed=3)


def test_each_keywords_weight_is_divided_by_its_kept_adapters():
  mask = {"castle": ("gothic", "stone", "fog"), "horse": ("pony",), "night": ()}
  assert masks.merge_weights(mask) == pytest.approx(
      {"gothic": 1 / 3, "stone": 1 / 3, "fog": 1 / 3, "pony": 1.0}
  )
  shared = {"a": ("x", "y"), "b": ("x",)}
  assert masks.merge_weights(shared, {"a": 0.5, "b": 2.0}) == pytest.approx(
      {"x": 0.25 + 2.0, "y": 0.25}
  )


def test_a_keyword_listing_an_adapter_twice_is_named():
  with pytest.raises(ConfigError, match="lists an adapter twice"):
    masks.all_masks({"a": ["x", "x"]})
