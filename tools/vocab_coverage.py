"""How well the parallel vocabulary covers each language: tokens per character, byte share.

  python -m tools.vocab_coverage [--vocab_sizes 8192,16384] [--json_out FILE]

For each size, the parallel vocabulary's recipe (`tasks.parallel.vocabulary`: the same
temperature-sampled train text and special tokens) is trained (or read from the cache) and
encodes every language's validation text. Per language: characters, tokens per character
(lower is better: fewer steps per sentence), and the share of tokens that are byte-fallback
pieces (a character the vocabulary has no piece for costs 1-4 of them). Scripts whose
text is mostly bytes are what a larger vocabulary would buy; every embedding row is paid
for on CPU, so the size is chosen on these figures.
"""

import argparse
import sys
from typing import Sequence

import numpy as np

from model_zoo.errors import ConfigError, UserError
from tasks.parallel import corpus, vocabulary
from tools import benchmark_common


def coverage(vocab_size: int, character_coverage: float) -> dict[str, dict[str, float]]:
  """Language -> {"chars", "tokens_per_char", "byte_share"} on its validation text."""
  sp = vocabulary.parallel_vocabulary(vocab_size, character_coverage).tokenizer
  is_byte = np.array([sp.is_byte(i) for i in range(sp.get_piece_size())])
  results = {}
  for lang in corpus.LANGUAGES:
    texts = corpus.monolingual(lang, "validation")
    ids = np.concatenate([np.asarray(ids, np.int64) for ids in sp.encode(texts)])
    chars = sum(map(len, texts))
    results[lang] = {
        "chars": chars,
        "tokens_per_char": len(ids) / chars,
        "byte_share": float(is_byte[ids].mean()),
    }
  return results


def format_table(results: dict) -> str:
  sizes = list(results["coverage"])
  header = ["lang", "chars", *(f"{k}{s}" for s in sizes for k in ("tok/ch@", "bytes%@"))]
  rows = [
      [
          lang,
          str(results["coverage"][sizes[0]][lang]["chars"]),
          *(
              cell
              for s in sizes
              for cell in (
                  f"{results['coverage'][s][lang]['tokens_per_char']:.3f}",
                  f"{100 * results['coverage'][s][lang]['byte_share']:.2f}",
              )
          ),
      ]
      for lang in corpus.LANGUAGES
  ]
  widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
  return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows])


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m tools.vocab_coverage", allow_abbrev=False, description=__doc__.split("\n")[0]
  )
  parser.add_argument("--vocab_sizes", default=f"{vocabulary.VOCAB_SIZE},16384")
  parser.add_argument(
      "--character_coverage",
      type=float,
      default=vocabulary.CHARACTER_COVERAGE,
      help="share of the text's characters that get a piece of their own",
  )
  parser.add_argument("--json_out", default=None, help="write the results here (default: stdout)")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  try:
    try:
      sizes = [int(s) for s in args.vocab_sizes.split(",") if s.strip()]
    except ValueError as e:
      raise ConfigError(
          f"--vocab_sizes must be comma-separated integers; got {args.vocab_sizes!r}"
      ) from e
    if not sizes:
      raise ConfigError("--vocab_sizes needs at least one size, e.g. --vocab_sizes 8192")
    results = {
        "corpus_fingerprint": corpus.fingerprint(),
        "temperature": vocabulary.TEMPERATURE,
        "character_coverage": args.character_coverage,
        "sentencepiece_version": benchmark_common.version("sentencepiece"),
        "coverage": {str(size): coverage(size, args.character_coverage) for size in sizes},
    }
  except UserError as e:
    return benchmark_common.report_user_error(e)
  benchmark_common.emit(results, format_table(results), args.json_out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
