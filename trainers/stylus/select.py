"""Stylus end to end for one prompt: retrieve the adapters whose refined descriptions are near
it, compose them per keyword, and merge a mask's adapters into the base model."""

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from model_zoo.layers import lora
from trainers.stylus import composer, masks
from trainers.stylus.catalog import Entry
from trainers.stylus.retriever import AdapterIndex


@dataclasses.dataclass(frozen=True)
class Choice:
  """What was chosen for a prompt, and why."""

  keywords: list[str]
  retrieved: list[tuple[str, float]]  # (adapter, cosine), best first
  composition: composer.Composition

  def why(self) -> list[str]:
    shown = ", ".join(f"{name} ({cosine:.3f})" for name, cosine in self.retrieved)
    return [f"retrieved: {shown}", *self.composition.why()]


def choose(
    prompt: str,
    index: AdapterIndex,
    embed: Callable[[Sequence[str]], np.ndarray],
    embedder_name: str,
    catalog: Mapping[str, Entry],
    score: composer.Score,
    top_k: int = 8,
    per_keyword: int = 2,
    min_gain: float = 0.0,
) -> Choice:
  """The prompt's keywords, the top-k retrieved adapters that the catalog holds, and the
  composer's choice among them per keyword."""
  keywords = composer.split_keywords(prompt)
  retrieved = [
      (name, cosine)
      for name, cosine in index.top_k(embed([prompt])[0], top_k, embedder_name)
      if name in catalog
  ]
  composition = composer.compose(
      keywords, [name for name, _ in retrieved], score, per_keyword, min_gain
  )
  return Choice(keywords, retrieved, composition)


def merged_for_mask(
    base: Any,
    mask: masks.Mask,
    catalog: Mapping[str, Entry],
    keyword_weights: Optional[Mapping[str, float]] = None,
) -> Any:
  """`base` with the mask's adapters merged: each at its keyword's weight divided among the
  keyword's kept adapters (masks.merge_weights), times its own alpha / rank."""
  weights = masks.merge_weights(mask, keyword_weights)
  return lora.merge_weighted(
      base, [(catalog[name].weights, w * catalog[name].scale) for name, w in weights.items()]
  )
