"""Rollout files, and the SeqIO task that trains a prefix scorer on one.

A rollout file is JSONL, one sampled continuation per line:
{"input": prompt, "output": continuation, "num_tokens": generated tokens with EOS,
 "rewards": {reward name: value, ...}}, written by `python -m tools.score_rollouts` from the
predictions of `python -m trainers.infer`. Every line is checked when a file is read, and a
bad one is named by its line number, so a task fails when it is registered, not mid-training.
"""

import functools
import json
import math
import os
from typing import Iterator, Mapping, Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import numpy as np
import seqio
import tensorflow as tf

from model_zoo.errors import MissingFileError
from tasks import cache
from tasks.controlled.rewards import Rollout
from tasks.pipeline import DataError

ROLLOUT_FORMAT = '{"input": str, "output": str, "num_tokens": int, "rewards": {name: float}}'


def _json_objects(path: str | os.PathLike) -> Iterator[tuple[str, dict]]:
  """("<path> line <n>", object) of each non-blank line."""
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except FileNotFoundError as e:
    raise MissingFileError(f"no such JSONL file: {path}") from e
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    where = f"{path} line {number}"
    try:
      value = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(f"{where} is not JSON ({e.msg}, column {e.colno}): {line[:80]!r}") from e
    if not isinstance(value, dict):
      raise DataError(f"{where} is a JSON {type(value).__name__}, not an object")
    yield where, value


def _text(value: dict, key: str, where: str, expected: str) -> str:
  if not isinstance(value.get(key), str):
    got = "has none" if key not in value else f"has {type(value[key]).__name__}"
    raise DataError(f"{where} needs a string {key!r} but {got}; expected {expected}")
  return value[key]


def _reward(value: dict, name: str, where: str) -> float:
  rewards = value.get("rewards")
  if not isinstance(rewards, dict):
    raise DataError(f"{where} has no 'rewards' object; expected {ROLLOUT_FORMAT}")
  if name not in rewards:
    raise DataError(
        f"{where} has no reward {name!r}; its rewards are {sorted(rewards)}. Score the file "
        f"with it: python -m tools.score_rollouts --rewards {name} ..."
    )
  number = rewards[name]
  if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
    raise DataError(f"{where}: the reward {name!r} is {number!r}, not a finite number")
  return float(number)


def read_rollouts(path: str | os.PathLike, reward: str) -> list[tuple[str, str, float]]:
  """(prompt, continuation, reward) of each line of a rollout file, by the reward `reward`."""
  return [
      (
          _text(value, "input", where, ROLLOUT_FORMAT),
          _text(value, "output", where, ROLLOUT_FORMAT),
          _reward(value, reward, where),
      )
      for where, value in _json_objects(path)
  ]


def read_predictions(path: str | os.PathLike) -> list[tuple[str, list[str]]]:
  """(prompt, its sampled continuations) of each line of `trainers.infer` predictions.

  The continuations are "outputs" (every decode, best first; `infer.return_all_decodes`)
  when a line has them, else its one "output": "output" is the first of "outputs", so
  taking both would count the best decode twice.
  """
  expected = 'a trainers.infer prediction {"input": str, "output": str[, "outputs": [str]]}'
  predictions = []
  for where, value in _json_objects(path):
    prompt, output = _text(value, "input", where, expected), _text(value, "output", where, expected)
    outputs = value.get("outputs", [output])
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
      raise DataError(f"{where}: 'outputs' must be a list of strings; expected {expected}")
    if output not in outputs:
      raise DataError(
          f"{where}: its 'output' is not one of its 'outputs' (trainers.infer writes the best "
          "decode as both); was the file edited?"
      )
    predictions.append((prompt, outputs))
  return predictions


def write_rollouts(
    path: str | os.PathLike, rollouts: Sequence[Rollout], rewards: Mapping[str, np.ndarray]
) -> None:
  """The rollout file of `rollouts`, with each reward's value for them; written atomically."""
  lines = [
      json.dumps(
          {
              "input": r.prompt,
              "output": r.output,
              "num_tokens": r.num_tokens,
              "rewards": {name: float(values[i]) for name, values in rewards.items()},
          },
          ensure_ascii=False,
      )
      + "\n"
      for i, r in enumerate(rollouts)
  ]
  cache.atomic_write(path, "".join(lines).encode("utf-8"))


def _rollout_dataset(
    split: str, shuffle_files: bool, seed: int | None = None, *, path: str, reward: str
) -> tf.data.Dataset:
  """One file: nothing to shuffle here; the Task shuffles the examples."""
  del split, shuffle_files, seed
  prompts, outputs, rewards = zip(*read_rollouts(path, reward))
  return tf.data.Dataset.from_tensor_slices(
      {
          "inputs": list(prompts),
          "targets": list(outputs),
          "rewards": np.asarray(rewards, np.float32),
      }
  )


def register_rollout_task(
    name: str,
    rollout_file: str,
    reward: str,
    vocabulary: seqio.Vocabulary,
    *,
    add_eos: bool = True,
) -> seqio.Task:
  """Registers (or replaces) the task `name`: prompt -> rollout, with the reward `reward`.

  Its "train" split yields {"inputs": the prompt's ids (no EOS: a decoder-only LM continues
  it), "targets": the rollout's ids (+ EOS when `add_eos`), "rewards": float32}, for the
  `prefix_scorer` feature converter. The whole file is checked here.
  """
  rows = read_rollouts(rollout_file, reward)
  if not rows:
    raise DataError(
        f"the rollout file {rollout_file} has no rollouts; write one with "
        "python -m tools.score_rollouts"
    )
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(
          functools.partial(_rollout_dataset, path=str(rollout_file), reward=reward),
          splits=("train",),
          num_input_examples={"train": len(rows)},
      ),
      # No CacheDatasetPlaceholder: the task is re-registered from its file at each run, so
      # an offline cache kept under its name would go stale when the file changes.
      preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
      output_features={
          "inputs": seqio.Feature(vocabulary, add_eos=False),
          "targets": seqio.Feature(vocabulary, add_eos=add_eos),
          "rewards": seqio.Feature(
              seqio.PassThroughVocabulary(1), add_eos=False, dtype=tf.float32, rank=0
          ),
      },
      metric_fns=[],
      # A prompt's rollouts are consecutive lines: a full shuffle spreads them over batches.
      shuffle_buffer_size=len(rows),
  )
