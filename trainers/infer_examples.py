"""The examples `trainers.infer` runs on: read from a file or a task's split, encoded as the
task's features encode text, and fitted to the decode length."""

import dataclasses
import io
import itertools
import json
import os
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

import jax
import numpy as np

from model_zoo import feature_converters
from model_zoo.errors import ConfigError, MissingFileError
from trainers import text_prediction


@dataclasses.dataclass(frozen=True)
class Example:
  """Token ids of one example; `index` orders the output and `where` names it in messages."""

  index: int
  prompt: feature_converters.Prompt  # token ids, or an ASR utterance's frames
  target: list[int]
  where: str


@dataclasses.dataclass(frozen=True)
class Codec:
  """Text <-> ids as the task's features do it, so prompts look like the training data."""

  prompt_vocab: Any  # None: the prompts are audio frames (an ASR model's), not text
  target_vocab: Any
  prompt_eos: bool  # only a task's "inputs" feature ends a prompt with EOS
  target_eos: bool
  audio_prompt: Optional[Callable[[str], np.ndarray]] = None  # a WAV file's path -> frames

  @classmethod
  def of_features(
      cls,
      features: Mapping[str, Any],
      audio_prompt: Optional[Callable[[str], np.ndarray]] = None,
  ) -> "Codec":
    """From a task's output features (each with `.vocabulary` and `.add_eos`); with
    `audio_prompt` a prompt is a WAV file's path, turned into frames by it."""
    prompt = features.get("inputs")
    target = features["targets"]
    prompt_vocab = None if audio_prompt else (prompt or target).vocabulary
    eos = bool(prompt and prompt.add_eos)
    return cls(prompt_vocab, target.vocabulary, eos, target.add_eos, audio_prompt)

  def encode_prompt(self, text: str) -> feature_converters.Prompt:
    if self.audio_prompt is not None:
      return self.audio_prompt(text)
    return _encode(self.prompt_vocab, text, self.prompt_eos)

  def encode_target(self, text: str) -> list[int]:
    return _encode(self.target_vocab, text, self.target_eos)

  def decode_prompt(self, ids: Sequence[int]) -> str:
    """The prompt's text ("" for frames: the record's target names the utterance)."""
    if self.prompt_vocab is None:
      return ""
    return text_prediction.decode_tokens(self.prompt_vocab, ids, self.prompt_vocab.eos_id)

  def decode_target(self, ids: Sequence[int]) -> str:
    return text_prediction.decode_tokens(self.target_vocab, ids, self.target_vocab.eos_id)


def _encode(vocab, text: str, eos: bool) -> list[int]:
  ids = [int(t) for t in vocab.encode(text)]
  return ids + [vocab.eos_id] if eos else ids


def read_input_file(path: str, mode: str) -> list[tuple[str, Optional[str], str]]:
  """(input, target or None, where) of each example of a JSONL or plain text file."""
  if not os.path.isfile(path):
    raise MissingFileError(
        f"infer.input_file={path!r} does not exist; give a text file with one "
        "prompt per line or a .jsonl file, or None to read the task's split."
    )
  lines = [(number, line) for number, line in enumerate(_text_lines(path), 1) if line.strip()]
  if path.endswith(".jsonl"):
    items = [_json_example(line, f"{path} line {number}", mode) for number, line in lines]
  elif mode == "score":
    raise ConfigError(
        f"infer.mode='score' needs targets, which the text file {path} cannot hold; give a "
        '.jsonl file with lines like {"input": "...", "target": "..."} as infer.input_file.'
    )
  else:
    items = [(line.rstrip("\r\n"), None, f"{path} line {number}") for number, line in lines]
  if not items:
    raise ConfigError(
        f"infer.input_file={path} holds no examples (blank lines are skipped); write one "
        'prompt per line, or one {"input": ...} object per line of a .jsonl file.'
    )
  return items


def _text_lines(path: str) -> list[str]:
  """The lines of a UTF-8 file; any other encoding is the user's to fix, named by its line."""
  with open(path, "rb") as f:
    data = f.read()
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    number = data.count(b"\n", 0, e.start) + 1
    raise ConfigError(
        f"infer.input_file={path} line {number} is not UTF-8 (byte 0x{data[e.start]:02x}); "
        "re-encode the file as UTF-8, e.g. iconv -f <its encoding> -t UTF-8."
    ) from e
  return io.StringIO(text, newline=None).readlines()  # as open() splits: \n, \r\n or \r


def _json_example(line: str, where: str, mode: str) -> tuple[str, Optional[str], str]:
  needed = ("input", "target") if mode == "score" else ("input",)
  try:
    record = json.loads(line)
  except json.JSONDecodeError as e:
    raise ConfigError(
        f"{where} is not JSON ({e.msg}); each line of a .jsonl input_file must be an "
        'object like {"input": "...", "target": "..."}.'
    ) from e
  if not isinstance(record, dict) or any(not isinstance(record.get(k), str) for k in needed):
    raise ConfigError(
        f"{where}: expected an object with the string field(s) {list(needed)} "
        f"(mode={mode!r}); got {line.strip()[:100]}"
    )
  target = record.get("target")
  return record["input"], target if isinstance(target, str) else None, where


def file_examples(
    items: Sequence[tuple[str, Optional[str], str]], codec: Codec, mode: str
) -> list[Example]:
  """This process's share of the file's examples: every process_count-th one."""
  p, n = jax.process_index(), jax.process_count()
  return [
      Example(
          i,
          codec.encode_prompt(text),
          codec.encode_target(target) if mode == "score" else [],
          where,
      )
      for i, (text, target, where) in enumerate(items)
      if i % n == p
  ]


def split_examples(
    rows: Iterable[dict[str, np.ndarray]],
    converter: type[feature_converters.FeatureConverter],
    name: str,
    max_examples: Optional[int],
) -> Iterator[Example]:
  """This process's share of a split read one row per process and batch, in order."""
  p, n = jax.process_index(), jax.process_count()
  batches = itertools.islice(rows, None if max_examples is None else -(-max_examples // n))
  return (
      Example(
          j * n + p,
          *converter.row_tokens({k: v[0] for k, v in batch.items()}),
          f"{name} example {j * n + p}",
      )
      for j, batch in enumerate(batches)
  )


def fit_length(
    example: Example,
    *,
    mode: str,
    length: int,
    converter: type[feature_converters.FeatureConverter],
    truncate: bool,
    prompt_length: Optional[int] = None,
) -> Example:
  """The example if it fits `length`; else an error, or its prompt's last tokens if `truncate`."""
  if mode == "score" and len(example.target) > length:
    raise ConfigError(
        f"The target of {example.where} has {len(example.target)} tokens but "
        f"infer.max_length={length}; raise --gin.infer.max_length (targets are never truncated)."
    )
  room, why = converter.prompt_room(
      length, len(example.target), scoring=mode == "score", prompt_length=prompt_length
  )
  size = len(example.prompt)
  if size <= room:
    return example
  if not truncate:
    raise ConfigError(
        f"The prompt of {example.where} has {size} tokens but infer.max_length={length} leaves "
        f"room for {room} ({why}); raise --gin.infer.max_length, shorten the prompt, or set "
        f"--gin.infer.truncate_prompts=True to keep its last {room} tokens."
    )
  print(
      f"Truncated the prompt of {example.where} from {size} to its last {room} tokens "
      "(infer.truncate_prompts=True).",
      flush=True,
  )
  return dataclasses.replace(example, prompt=example.prompt[size - room :])
