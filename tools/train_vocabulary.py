"""Train a SentencePiece vocabulary (T5/SeqIO ids: 0 pad, 1 EOS, 2 UNK) from local text.

Unigram with byte fallback, from text files or from a SeqIO task or mixture's split:

  python -m tools.train_vocabulary --input a.txt --input b.txt \
      --model_prefix /tmp/spm --vocab_size 1024 --user_defined_symbols '<sep>,<mask>'
  python -m tools.train_vocabulary --mixture my_mixture --module my_tasks --split train \
      --model_prefix /tmp/spm --vocab_size 2000 --language_tags de,fr --ul2_mode_tokens

A mixture's text is read before tokenization, so a task may declare the very vocabulary
being trained: each task's source is run through its preprocessors up to, not including,
the first of SeqIO's tokenizers (`seqio.preprocessors.tokenize` or
`tokenize_and_append_eos`, also inside a functools.partial), and every string feature
that is one of the task's output features (what that tokenizer would encode) becomes one
line. A task that tokenizes some other way fails with a message saying so.
"""

import argparse
import functools
import itertools
import os
import re
import sys
import tempfile
from typing import Iterator, Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import numpy as np
import seqio
import tensorflow as tf

from model_zoo.errors import UserError
from tasks import pipeline, vocabularies
from tasks.ul2 import vocabulary as ul2_vocabulary
from tools import benchmark_common

_TOKENIZERS = (seqio.preprocessors.tokenize, seqio.preprocessors.tokenize_and_append_eos)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument(
      "--input", action="append", help="text file, one sentence a line; repeat for several files"
  )
  source.add_argument("--mixture", help="a registered SeqIO task or mixture to train on")
  parser.add_argument("--module", help="module to import first so --mixture is registered")
  parser.add_argument("--split", default="train", help="the split of --mixture to read")
  parser.add_argument(
      "--max_examples", type=int, default=None, help="read at most this many examples per task"
  )
  parser.add_argument(
      "--model_prefix", required=True, help="writes <prefix>.model and <prefix>.vocab"
  )
  parser.add_argument("--vocab_size", type=int, required=True)
  parser.add_argument(
      "--user_defined_symbols",
      default="",
      help="comma-separated pieces that are never split, e.g. '<sep>,<mask>'",
  )
  parser.add_argument(
      "--language_tags", default="", help="comma-separated codes; 'de,fr' adds <2de> and <2fr>"
  )
  parser.add_argument("--ul2_mode_tokens", action="store_true", help="add UL2's [NLU] [NLG] [S2S]")
  return parser


def _split_commas(text: str) -> list[str]:
  return [s.strip() for s in text.split(",") if s.strip()]


def special_symbols(args: argparse.Namespace) -> list[str]:
  """User-defined pieces: explicit ones, then <2xx> language tags, then UL2 mode tokens."""
  symbols = _split_commas(args.user_defined_symbols)
  symbols += [f"<2{code}>" for code in _split_commas(args.language_tags)]
  if args.ul2_mode_tokens:
    symbols += ul2_vocabulary.MODE_TOKENS.values()
  return list(dict.fromkeys(symbols))  # drop repeats, keep order


def _is_tokenizer(preprocessor) -> bool:
  """Whether `preprocessor` is one of SeqIO's tokenizers, possibly in a functools.partial."""
  while isinstance(preprocessor, functools.partial):
    preprocessor = preprocessor.func
  return any(preprocessor is fn for fn in _TOKENIZERS)


def untokenized_dataset(task: seqio.Task, split: str) -> tf.data.Dataset:
  """`task`'s examples just before its first SeqIO tokenizer, so no vocabulary is loaded.

  Preprocessors get `output_features` and `sequence_length=None` the way SeqIO passes
  them; the CacheDatasetPlaceholder marker is skipped, as SeqIO does.
  """
  ds = task.source.get_dataset(split=split, shuffle=False)
  for preprocessor in task.preprocessors:
    if _is_tokenizer(preprocessor):
      break
    if isinstance(preprocessor, seqio.CacheDatasetPlaceholder):
      continue
    ds = seqio.utils.add_kwargs_to_transform(
        preprocessor, sequence_length=None, output_features=task.output_features
    )(ds)
  return ds


def _text_features(task: seqio.Task, ds: tf.data.Dataset) -> list[str]:
  """The string output features of `ds`: the text `tokenize` would encode."""
  spec = ds.element_spec
  keys = [
      k
      for k in sorted(task.output_features)
      if isinstance(spec, dict) and k in spec and spec[k].dtype == tf.string
  ]
  if not keys:
    raise pipeline.DataError(
        f"task {task.name!r}: none of its output features {sorted(task.output_features)} is "
        f"text before its first SeqIO tokenizer (its examples there are {spec}). "
        "train_vocabulary reads the text that seqio.preprocessors.tokenize (or "
        "tokenize_and_append_eos) would encode; tokenize with one of those, or pass the "
        "text as files with --input."
    )
  return keys


def mixture_text(
    name: str, split: str, *, module: str | None = None, max_examples: int | None = None
) -> Iterator[str]:
  """The raw text of each task in `name`: one line per string output feature of an example.

  The text is read before tokenization (see `untokenized_dataset`), so the tasks'
  vocabularies need not exist yet: they may be the one being trained.
  """
  if max_examples is not None and max_examples <= 0:
    raise pipeline.DataError(f"--max_examples={max_examples} must be a positive number")
  provider = pipeline.get_task_or_mixture(name, module=module)
  if split not in provider.splits:
    raise pipeline.DataError(
        f"--split={split!r}: {name!r} has no such split; it has {sorted(provider.splits)}"
    )
  for task in pipeline.tasks_of(provider):
    if split not in task.splits:  # as seqio.Mixture.get_dataset: skip the task
      continue
    try:
      ds = untokenized_dataset(task, split)
      keys = _text_features(task, ds)
      for example in itertools.islice(ds.as_numpy_iterator(), max_examples):
        for key in keys:
          for text in np.ravel(example[key]):
            yield text.decode("utf-8").replace("\n", " ")
    except tf.errors.NotFoundError as e:
      missing = re.search(r"([^\s{}]+); No such file or directory", e.message)
      raise pipeline.DataError(
          f"task {task.name!r} needs a file that does not exist: "
          f"{missing.group(1) if missing else e.message.strip().splitlines()[-1]}. If it is the "
          "vocabulary being trained, tokenize with seqio.preprocessors.tokenize (the text is "
          "read just before it); otherwise fix the path in the task."
      ) from e


def _train(args: argparse.Namespace, text_paths: Sequence[str]) -> str:
  return vocabularies.train_sentencepiece(
      text_paths, args.model_prefix, args.vocab_size, user_defined_symbols=special_symbols(args)
  )


def main(argv: Sequence[str] | None = None) -> str:
  args = _parser().parse_args(argv)
  if args.input:
    path = _train(args, args.input)
  else:
    with tempfile.TemporaryDirectory() as tmp:
      text_path = os.path.join(tmp, "text.txt")
      lines = 0
      with open(text_path, "w", encoding="utf-8") as f:
        for line in mixture_text(
            args.mixture, args.split, module=args.module, max_examples=args.max_examples
        ):
          f.write(line + "\n")
          lines += 1
      if not lines:
        raise pipeline.DataError(
            f"--mixture={args.mixture!r} --split={args.split!r} gave no text to train on; "
            "check that the split has examples, or pass text files with --input"
        )
      path = _train(args, [text_path])
  print(path)
  return path


if __name__ == "__main__":
  try:
    main()
  except UserError as e:
    sys.exit(benchmark_common.report_user_error(e))
