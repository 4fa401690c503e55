"""Train a SentencePiece vocabulary (T5/SeqIO ids: 0 pad, 1 EOS, 2 UNK) from local text.

  python -m tools.train_vocabulary --input a.txt --input b.txt \
      --model_prefix /tmp/spm --vocab_size 1024 --user_defined_symbols '<sep>,<mask>'
"""

import argparse
from typing import Sequence

from tasks import vocabularies


def main(argv: Sequence[str] | None = None) -> str:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
      "--input",
      action="append",
      required=True,
      help="text file, one sentence a line; repeat for several files",
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
  args = parser.parse_args(argv)
  symbols = [s for s in args.user_defined_symbols.split(",") if s]
  path = vocabularies.train_sentencepiece(
      args.input, args.model_prefix, args.vocab_size, user_defined_symbols=symbols
  )
  print(path)
  return path


if __name__ == "__main__":
  main()
