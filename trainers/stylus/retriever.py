"""Stylus's retriever: the catalog's refined descriptions embedded once into an index file, and
the top-K adapters for a prompt by cosine similarity between its embedding and theirs."""

import dataclasses
import os
from typing import Sequence

import numpy as np

from model_zoo.errors import ConfigError, MissingFileError

INDEX_FILE = "index.npz"  # a catalog's index, beside its adapter directories


@dataclasses.dataclass(frozen=True)
class AdapterIndex:
  """One row per adapter: its name, its (refined) description and that description's
  embedding, L2-normalised; `embedder` names what embedded them, so a prompt is embedded
  alike."""

  names: tuple[str, ...]
  descriptions: tuple[str, ...]
  vectors: np.ndarray  # [adapters, dim] float32, rows of unit length
  embedder: str

  @classmethod
  def build(
      cls, names: Sequence[str], descriptions: Sequence[str], vectors: np.ndarray, embedder: str
  ) -> "AdapterIndex":
    vectors = np.asarray(vectors, np.float32)
    if len(set(names)) != len(names):
      raise ConfigError(f"adapter names repeat in the index: {sorted(names)}")
    if vectors.ndim != 2 or not len(names) == len(descriptions) == vectors.shape[0]:
      raise ConfigError(
          f"an index needs one description and one vector per adapter; got {len(names)} names, "
          f"{len(descriptions)} descriptions and vectors of shape {vectors.shape}"
      )
    return cls(tuple(names), tuple(descriptions), _unit_rows(vectors), embedder)

  def save(self, path: str) -> None:
    """Writes the index (an .npz) atomically."""
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    try:
      np.savez(
          tmp,
          names=np.array(self.names),
          descriptions=np.array(self.descriptions),
          vectors=self.vectors,
          embedder=np.array(self.embedder),
      )
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)

  @classmethod
  def load(cls, path: str) -> "AdapterIndex":
    if not os.path.isfile(path):
      raise MissingFileError(f"no adapter index at {path}; build one with the refiner first")
    try:
      with np.load(path, allow_pickle=False) as f:
        return cls.build(
            [str(n) for n in f["names"]],
            [str(d) for d in f["descriptions"]],
            f["vectors"],
            str(f["embedder"]),
        )
    except (OSError, ValueError, KeyError) as e:
      raise ConfigError(f"the adapter index {path} is damaged: {e}") from None

  def top_k(self, query: np.ndarray, k: int, embedder: str) -> list[tuple[str, float]]:
    """The k adapters whose descriptions are nearest the query embedding (cosine similarity,
    highest first; ties in index order)."""
    if embedder != self.embedder:
      raise ConfigError(
          f"the prompt was embedded by {embedder!r} and the index by {self.embedder!r}; embed "
          "both with the same model"
      )
    if k < 1:
      raise ConfigError(f"top-k needs k >= 1; got {k}")
    query = np.asarray(query, np.float32).reshape(-1)
    if query.shape[0] != self.vectors.shape[1]:
      raise ConfigError(
          f"the query has {query.shape[0]} dimensions and the index {self.vectors.shape[1]}"
      )
    scores = self.vectors @ _unit_rows(query[None])[0]
    order = np.argsort(-scores, kind="stable")[:k]
    return [(self.names[i], float(scores[i])) for i in order]


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
  norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
  if np.any(norms == 0) or not np.all(np.isfinite(vectors)):
    raise ConfigError("an embedding is zero or not finite; it has no direction to compare")
  return (vectors / norms).astype(np.float32)
