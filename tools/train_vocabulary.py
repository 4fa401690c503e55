"""Train a SentencePiece vocabulary (T5/SeqIO ids: 0 pad, 1 EOS, 2 UNK) from local text.

Unigram with byte fallback, from text files or from a SeqIO task or mixture's split:

  python -m tools.train_vocabulary --input a.txt --input b.txt \
      --model_prefix /tmp/spm --vocab_size 1024 --user_defined_symbols '<sep>,<mask>'
  python -m tools.train_vocabulary --mixture my_mixture --module my_tasks --split train \
      --model_prefix /tmp/spm --vocab_size 8000 --language_tags de,fr --ul2_mode_tokens

A mixture's text is its tasks' raw text features (SeqIO's `*_pretokenized` copies), so
those tasks' own vocabularies must already load.
"""

import argparse
import itertools
import os
import sys
import tempfile
from typing import Iterator, Sequence

from model_zoo.errors import UserError
from tasks import pipeline, vocabularies
from tasks.ul2 import vocabulary as ul2_vocabulary
from tools import benchmark_common

_PRETOKENIZED = "_pretokenized"


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


def mixture_text(
    name: str, split: str, *, module: str | None = None, max_examples: int | None = None
) -> Iterator[str]:
  """The raw text of every string feature of each task in `name`, one line per feature."""
  provider = pipeline.get_task_or_mixture(name, module=module)
  if split not in provider.splits:
    raise pipeline.DataError(
        f"--split={split!r}: {name!r} has no such split; it has {sorted(provider.splits)}"
    )
  for task in pipeline.tasks_of(provider):
    ds = task.get_dataset(sequence_length=None, split=split, shuffle=False)
    for example in itertools.islice(ds.as_numpy_iterator(), max_examples):
      for key in sorted(example):
        if key.endswith(_PRETOKENIZED):
          yield example[key].decode("utf-8").replace("\n", " ")


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
      with open(text_path, "w", encoding="utf-8") as f:
        for line in mixture_text(
            args.mixture, args.split, module=args.module, max_examples=args.max_examples
        ):
          f.write(line + "\n")
      path = _train(args, [text_path])
  print(path)
  return path


if __name__ == "__main__":
  try:
    main()
  except UserError as e:
    sys.exit(benchmark_common.report_user_error(e))
