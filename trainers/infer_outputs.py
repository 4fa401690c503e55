"""Where `trainers.infer` writes: JSON records of each batch's outputs, written atomically to a
file that is checked first (never silently replaced, in a directory that can be written), and
the summary of them it prints."""

import json
import os
import tempfile
from typing import Iterable, Optional, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from model_zoo.errors import ConfigError, UserError
from trainers.infer_examples import Codec


class OutputDirError(UserError, OSError):
  """The output directory cannot be created or written (a file in the way, no permission)."""


def on_any_process(flag: bool) -> bool:
  """Whether `flag` holds on some process (every process calls it: a collective)."""
  if jax.process_count() == 1:
    return flag
  return bool(multihost_utils.process_allgather(np.int32(flag)).max())


def records(
    mode: str,
    outputs: dict,
    meta: dict,
    texts: Optional[dict],
    codec: Codec,
    return_all_decodes: bool,
) -> list[tuple[int, dict]]:
  """(index, JSON record) of each real row of a gathered batch."""
  records = []
  for i in np.flatnonzero(meta["index"] >= 0):
    index = int(meta["index"][i])
    text, target = (
        texts[index]
        if texts is not None
        else (codec.decode_prompt(meta["prompt"][i]), codec.decode_target(meta["target"][i]))
    )
    record = {"input": text} if target is None else {"input": text, "target": target}
    if mode == "score":
      record["score"] = float(outputs["scores"][i])
    else:
      sequences, scores = outputs["sequences"][i], outputs["scores"][i]
      record.update(output=codec.decode_target(sequences[0]), score=float(scores[0]))
      if return_all_decodes:
        record.update(outputs=[codec.decode_target(s) for s in sequences], scores=scores.tolist())
      if "aux" in outputs:
        record["aux"] = {k: v[i].tolist() for k, v in outputs["aux"].items()}
    records.append((index, record))
  return records


def write_jsonl(path: str, records: Iterable[dict]) -> None:
  """All or nothing: a reader never sees a half-written file."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
  os.replace(tmp, path)


SHOWN_RECORDS = 3  # the results `summary` prints
SHOWN_CHARS = 100  # of each text, so a long one keeps to a line or two
_SHOWN_FIELDS = ("input", "target", "output", "score")


def summary(records: Sequence[dict], mode: str, path: str) -> str:
  """The first records' texts and score, then how many were written where: a glance at what
  the run decoded without opening the file. Texts are JSON strings, so their spaces and
  newlines show."""
  lines = []
  for number, record in enumerate(records[:SHOWN_RECORDS], 1):
    lines.append(f"Result {number} of {len(records)}:")
    lines += [f"  {key + ':':<8}{_shown(record[key])}" for key in _SHOWN_FIELDS if key in record]
  lines.append(f"Wrote {len(records)} {mode} results to {path}")
  return "\n".join(lines)


def _shown(value) -> str:
  if isinstance(value, float):
    return f"{value:.4f}"
  text = json.dumps(value[:SHOWN_CHARS], ensure_ascii=False)
  return text if len(value) <= SHOWN_CHARS else f"{text}... ({len(value)} characters)"


def planned_step(model_dir: str, checkpoint_step: Optional[int]) -> Optional[int]:
  """The step restore will pick (`checkpoint_step`, else the newest listed), read from the
  directory listing so the output can be checked before anything is restored; None when
  MODEL_DIR lists none (restoring then says so). Orbax names a finished step by its number."""
  if checkpoint_step is not None:
    return checkpoint_step
  try:
    names = os.listdir(os.path.join(model_dir, "checkpoints"))
  except OSError:
    return None
  return max((int(n) for n in names if n.isdigit()), default=None)


def check_output(path: str, overwrite: bool, create: bool) -> None:
  """Raises a UserError when `path` must not or cannot be written, on every process alike
  (process 0 writes, so it checks; the others would otherwise wait for it in a collective).

  Without `create`, nothing is made: the output directory's nearest existing ancestor must
  be a directory this process may write. With it, the directory is made and a probe file
  written and removed, so a run that decodes can also write its results."""
  error = None
  if jax.process_index() == 0:
    try:
      _check_output_here(path, overwrite, create)
    except UserError as e:
      error = e
  if on_any_process(error is not None):
    raise error or ConfigError(f"Process 0 cannot write {path}; see its error message.")


def _check_output_here(path: str, overwrite: bool, create: bool) -> None:
  directory = os.path.dirname(path)
  if os.path.exists(path) and not overwrite:
    raise ConfigError(
        f"{path} already exists (an earlier run of this mode and step); pass "
        "--gin.infer.overwrite=True to replace it, or --gin.infer.output_dir=... to write "
        "elsewhere."
    )
  fix = "set --gin.infer.output_dir to a writable directory."
  if create:
    try:
      os.makedirs(directory, exist_ok=True)
      with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
        pass
    except OSError as e:
      raise OutputDirError(f"Cannot write the output directory {directory} ({e}); {fix}") from e
    return
  existing = directory
  while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise OutputDirError(
        f"Cannot create the output directory {directory}: {existing} is not a directory; {fix}"
    )
  if not os.access(existing, os.W_OK | os.X_OK):
    raise OutputDirError(
        f"Cannot write the output directory {directory}: no permission to write {existing}; "
        f"{fix}"
    )
