"""Stylus's masking: for each keyword of a prompt, use one of its adapters, all of them, or
none; the choices cross over keywords, and each keyword's weight is split evenly among the
adapters it keeps, so a keyword with three adapters weighs no more than one with one.
"""

import itertools
import random
from typing import Mapping, Sequence

from model_zoo.errors import ConfigError

Mask = dict[str, tuple[str, ...]]  # keyword -> the adapters it keeps


def keyword_choices(adapters: Sequence[str]) -> list[tuple[str, ...]]:
  """A keyword's distinct choices: each adapter alone, all of them (if more than one), none."""
  if len(set(adapters)) != len(adapters):
    raise ConfigError(f"a keyword lists an adapter twice: {list(adapters)}")
  choices = [(a,) for a in adapters]
  if len(adapters) > 1:
    choices.append(tuple(adapters))
  return choices + [()]


def all_masks(assignment: Mapping[str, Sequence[str]]) -> list[Mask]:
  """Every mask of the scheme: the keywords' choices crossed, each mask once."""
  keywords = list(assignment)
  product = itertools.product(*(keyword_choices(assignment[k]) for k in keywords))
  return [dict(zip(keywords, picks)) for picks in product]


def sample_masks(assignment: Mapping[str, Sequence[str]], count: int, seed: int) -> list[Mask]:
  """`count` masks, each keyword's choice drawn uniformly from its choices (seeded)."""
  rng = random.Random(seed)
  return [{k: rng.choice(keyword_choices(a)) for k, a in assignment.items()} for _ in range(count)]


def merge_weights(
    mask: Mask, keyword_weights: Mapping[str, float] | None = None
) -> dict[str, float]:
  """adapter -> its weight under `mask`: each keyword's weight (default 1) divided by the
  number of adapters it keeps, summed over keywords for an adapter kept by several."""
  weights: dict[str, float] = {}
  for keyword, kept in mask.items():
    share = (keyword_weights or {}).get(keyword, 1.0) / len(kept) if kept else 0.0
    for adapter in kept:
      weights[adapter] = weights.get(adapter, 0.0) + share
  return weights
