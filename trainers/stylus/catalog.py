"""An adapter catalog on disk: a directory with one adapter directory per entry (written by
trainers.adapters.save, e.g. through trainers.export_adapter). Loading never fails as a whole
for one bad entry: an entry whose files are missing or damaged, or that was trained on
another base model, is skipped with a warning that says why."""

import dataclasses
import logging
import os
from typing import Any, Optional

from model_zoo.errors import MissingFileError, UserError
from trainers import adapters


@dataclasses.dataclass(frozen=True)
class Entry:
  name: str
  weights: Any  # the lora_a / lora_b tree
  card: dict[str, Any]

  @property
  def scale(self) -> float:
    return float(self.card["alpha"]) / float(self.card["rank"])


def load_catalog(
    directory: str, base_params: Optional[Any] = None
) -> tuple[dict[str, Entry], dict[str, str]]:
  """(name -> entry, name -> why skipped) for the adapters under `directory`; with
  `base_params`, entries of another base model are skipped."""
  if not os.path.isdir(directory):
    raise MissingFileError(f"no adapter catalog at {directory}")
  entries, skipped = {}, {}
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name)
    if not os.path.isdir(path) or ".tmp-" in name:  # a file, or a save still in progress
      continue
    try:
      weights, card = adapters.load(path, base_params)
    except UserError as e:
      skipped[name] = str(e)
      logging.warning("Skipping adapter %s of the catalog: %s", name, e)
      continue
    entries[name] = Entry(name, weights, card)
  return entries, skipped
