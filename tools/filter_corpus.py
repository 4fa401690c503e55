"""Runs the LangID filtering pipeline over each language of the parallel corpus.

  python -m tools.filter_corpus [--languages de,fr] [--split train] [--json_out FILE]
      [--langid_threshold 0.5] [--wordlist_min_fraction 0.2] [--min_chars 2] ...

Each language's distinct texts of --split (`corpus.monolingual`) go through
`tasks.langid.filters.default_filters` order (length, repetition, langid, wordlist,
dedup), with the thresholds given here; prints the lines each filter drops per language
and writes the counts, with a few dropped lines per filter, as JSON. --with_untranslated
adds the strings each language's catalogs left in English (the corpus leaves them out):
what the filters are for, and a check that LangID catches them.

On the train split the LangID model has seen the unambiguous texts, so what it drops there
is what it could not fit: language-neutral names ("Iran", "Masai"), texts shared with
other languages, and lines a catalog labels wrongly. --split validation shows it on unseen
text.
"""

import argparse
import sys
from typing import Sequence

from model_zoo.errors import UserError
from tasks.langid import filters
from tasks.parallel import corpus
from tools import benchmark_common


def _parser() -> argparse.ArgumentParser:
  defaults = {f.name: f for f in filters.default_filters()}
  length, repetition = defaults["length"], defaults["repetition"]
  langid, wordlist = defaults["langid"], defaults["wordlist"]
  parser = argparse.ArgumentParser(
      prog="python -m tools.filter_corpus", allow_abbrev=False, description=__doc__.split("\n")[0]
  )
  parser.add_argument("--languages", default=",".join(corpus.LANGUAGES), help="comma-separated")
  parser.add_argument("--split", default="train", choices=corpus.SPLITS)
  parser.add_argument("--json_out", default=None, help="write the results here (default: stdout)")
  parser.add_argument("--examples", type=int, default=3, help="dropped lines shown per filter")
  parser.add_argument(
      "--with_untranslated",
      action="store_true",
      help="also feed each language the catalog strings it left in English "
      "(corpus.untranslated) and report what each filter drops of them",
  )
  parser.add_argument("--min_chars", type=int, default=length.min_chars)
  parser.add_argument("--max_chars", type=int, default=length.max_chars)
  parser.add_argument("--min_words", type=int, default=length.min_words)
  parser.add_argument("--max_words", type=int, default=length.max_words)
  parser.add_argument("--repetition_min_words", type=int, default=repetition.min_words)
  parser.add_argument("--max_word_share", type=float, default=repetition.max_word_share)
  parser.add_argument(
      "--max_repeated_bigram_share", type=float, default=repetition.max_repeated_bigram_share
  )
  parser.add_argument("--langid_threshold", type=float, default=langid.threshold)
  parser.add_argument("--wordlist_min_fraction", type=float, default=wordlist.min_fraction)
  parser.add_argument("--wordlist_top_n", type=int, default=wordlist.top_n)
  return parser


def build_filters(args: argparse.Namespace) -> list[filters.LineFilter]:
  """The default order with the command line's thresholds (ConfigError on a bad one)."""
  return [
      filters.LengthFilter(args.min_chars, args.max_chars, args.min_words, args.max_words),
      filters.RepetitionFilter(
          args.repetition_min_words, args.max_word_share, args.max_repeated_bigram_share
      ),
      filters.LangIdFilter(args.langid_threshold),
      filters.WordlistFilter(args.wordlist_min_fraction, args.wordlist_top_n),
      filters.DedupFilter(),
  ]


def untranslated_drops(report: filters.FilterReport, first: int) -> dict:
  """Lines from index `first` on (the untranslated ones): how many, and who dropped them."""
  reasons = report.reasons[first:]
  return {
      "lines": len(reasons),
      "kept": reasons.count(None),
      "dropped": {name: reasons.count(name) for name in report.filter_names},
  }


def format_untranslated(untranslated: dict[str, dict]) -> str:
  """One line per language: of its strings left in English, what each filter dropped."""
  rows = []
  for lang, counts in untranslated.items():
    dropped = ", ".join(f"{name} {n}" for name, n in counts["dropped"].items())
    rows.append(
        f"{lang}: {counts['lines']} left in English; dropped by {dropped}; kept {counts['kept']}"
    )
  return "\n".join(["strings the catalogs left in English:", *rows])


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
  try:
    languages = [lang.strip() for lang in args.languages.split(",") if lang.strip()]
    for lang in languages:
      corpus.check_language(lang)
    pipeline = build_filters(args)
  except UserError as e:
    return benchmark_common.report_user_error(e)
  reports, untranslated = [], {}
  for lang in languages:
    lines = corpus.monolingual(lang, args.split)
    extra = corpus.untranslated(lang, args.split) if args.with_untranslated else ()
    reports.append(filters.run_filters(lines + list(extra), lang, pipeline))
    untranslated[lang] = untranslated_drops(reports[-1], first=len(lines))
  table = filters.format_table(reports)
  if args.with_untranslated:
    table += "\n\n" + format_untranslated(untranslated)
  results = {
      "settings": vars(args),
      "filter_order": [f.name for f in pipeline],
      "languages": {r.lang: r.summary(args.examples) for r in reports},
      "untranslated": untranslated if args.with_untranslated else None,
      "corpus_fingerprint": corpus.fingerprint(),
      **{f"{p}_version": benchmark_common.version(p) for p in ("jax", "wordfreq")},
  }
  benchmark_common.emit(results, table, args.json_out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
