"""LangID accuracy of podzoo's model side by side with langid.py, Lingua and CLD2.

  python -m tools.langid_compare [--max_per_language N] [--systems podzoo,langid,lingua,cld2]
      [--json_out FILE]

Every system labels the same sentences: the held-out set of `tasks.langid.data.held_out`
(each language's validation texts that no other language has and that training never
saw). langid.py and Lingua are restricted to the corpus's 20 languages (langid.py through
its own `LanguageIdentifier`, so the module-level identifier others use is untouched).
CLD2 cannot be restricted: an answer outside the 20, or none ("un"), counts as wrong.
Prints per-language accuracy (%) of each system with macro (mean over languages) and
micro (over sentences) averages; the JSON holds those, the sentences and every
prediction, so any figure can be recomputed.
"""

import argparse
import sys
from importlib import metadata
import time
from typing import Callable, Sequence

from model_zoo.errors import ConfigError, UserError
from tasks.langid import data, train
from tasks.parallel import corpus
from tools import benchmark_common

DISTRIBUTIONS = ("jax", "langid", "lingua-language-detector", "pycld2")
UNKNOWN = "unknown"  # a system that gives no answer
Predictor = Callable[[Sequence[str]], list[str]]


def podzoo_predictor() -> Predictor:
  langid_model = train.load_or_train()
  return lambda texts: langid_model.predict(texts)[0]


def langid_predictor() -> Predictor:
  from langid import langid as langid_py  # a peer: imported only if its system runs

  identifier = langid_py.LanguageIdentifier.from_modelstring(langid_py.model)
  identifier.set_languages(list(corpus.LANGUAGES))
  return lambda texts: [identifier.classify(text)[0] for text in texts]


def lingua_predictor() -> Predictor:
  import lingua  # a peer: imported only if its system runs

  detector = lingua.LanguageDetectorBuilder.from_languages(
      *(
          lingua.Language.from_iso_code_639_1(lingua.IsoCode639_1.from_str(lang))
          for lang in corpus.LANGUAGES
      )
  ).build()

  def predict(texts: Sequence[str]) -> list[str]:
    found = detector.detect_languages_in_parallel_of(list(texts))
    return [UNKNOWN if lang is None else lang.iso_code_639_1.name.lower() for lang in found]

  return predict


def cld2_predictor() -> Predictor:
  import pycld2  # a peer: imported only if its system runs

  def one(text: str) -> str:
    try:
      code = pycld2.detect(text)[2][0][1]  # the top language's code, "un" for none
    except pycld2.error:
      return UNKNOWN
    return UNKNOWN if code == "un" else code

  return lambda texts: [one(text) for text in texts]


SYSTEMS: dict[str, Callable[[], Predictor]] = {
    "podzoo": podzoo_predictor,
    "langid": langid_predictor,
    "lingua": lingua_predictor,
    "cld2": cld2_predictor,
}


def accuracies(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
  """Per-language accuracy (%) over the languages in `gold`, plus "macro" and "micro"."""
  per_language = {}
  for lang in dict.fromkeys(gold):
    hits = [p == g for g, p in zip(gold, predicted) if g == lang]
    per_language[lang] = 100.0 * sum(hits) / len(hits)
  micro = 100.0 * sum(g == p for g, p in zip(gold, predicted)) / len(gold)
  macro = sum(per_language.values()) / len(per_language)
  return {**per_language, "macro": macro, "micro": micro}


def compare(systems: Sequence[str], max_per_language: int | None) -> dict:
  held_out = data.held_out(max_per_language)
  texts = [text for lang in corpus.LANGUAGES for text in held_out[lang]]
  gold = [lang for lang in corpus.LANGUAGES for _ in held_out[lang]]
  predictions, seconds = {}, {}
  for name in systems:
    start = time.perf_counter()
    predictions[name] = SYSTEMS[name]()(texts)
    seconds[name] = time.perf_counter() - start
  return {
      "max_per_language": max_per_language,
      "counts": {lang: len(held_out[lang]) for lang in corpus.LANGUAGES},
      "accuracy": {name: accuracies(gold, predictions[name]) for name in systems},
      "seconds_with_loading": seconds,
      "texts": texts,
      "gold": gold,
      "predictions": predictions,
  }


def format_table(results: dict) -> str:
  systems = list(results["accuracy"])
  header = ["lang", "n", *systems]
  counts = results["counts"]
  rows = [
      [lang, str(n), *(f"{results['accuracy'][s][lang]:.1f}" for s in systems)]
      for lang, n in counts.items()
  ]
  for average in ("macro", "micro"):
    rows.append(
        [
            average,
            str(sum(counts.values())),
            *(f"{results['accuracy'][s][average]:.1f}" for s in systems),
        ]
    )
  widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
  return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows])


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m tools.langid_compare", allow_abbrev=False, description=__doc__.split("\n")[0]
  )
  parser.add_argument(
      "--max_per_language", type=int, default=None, help="first N held-out texts per language"
  )
  parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
  parser.add_argument("--json_out", default=None, help="write the results here (default: stdout)")
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
  systems = [s.strip() for s in args.systems.split(",") if s.strip()]
  unknown = [s for s in systems if s not in SYSTEMS]
  try:
    if unknown or not systems:
      raise ConfigError(
          f"--systems={args.systems!r}: unknown {unknown or 'empty list'}; choose among "
          f"{list(SYSTEMS)}"
      )
    results = compare(systems, args.max_per_language)
  except UserError as e:
    return benchmark_common.report_user_error(e)
  versions = {f"{d}_version": metadata.version(d) for d in DISTRIBUTIONS}
  results = {**versions, "corpus_fingerprint": corpus.fingerprint(), **results}
  benchmark_common.emit(results, format_table(results), args.json_out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
