"""LangID accuracy of podzoo's model side by side with langid.py, Lingua and CLD2.

  python -m tools.langid_compare [--max_per_language N] [--systems podzoo,langid,lingua,cld2]
      [--top_confusions 20] [--json_out FILE] [--plot FILE]

Every system labels the same sentences: the held-out set of `tasks.langid.data.held_out`
(each language's validation texts that no other language has and that training never
saw). podzoo knows every corpus language; a peer is scored on the corpus languages it
supports, in its own codes: a locale becomes its language code ("pt_BR" -> "pt", "zh_TW"
-> "zh", "sr@latin" -> "sr"), so a peer is not asked to tell variants apart, and CLD2's
own spellings are used ("he" -> "iw", "nb" -> "no", traditional Chinese -> "zh-Hant").
langid.py and Lingua are restricted to those codes (langid.py through its own
`LanguageIdentifier`, so the module-level identifier others use is untouched). CLD2 cannot
be restricted: an answer outside them, or none ("un"), counts as wrong. Beside each peer,
podzoo is scored on the peer's languages with its answers mapped to the peer's codes the
same way, so the two figures compare like with like.

Prints per-language accuracy (%) of each system ("-" where a peer lacks the language),
macro (mean over languages) and micro (over sentences) averages, sentences/s (prediction
alone, after one warm-up call, in the batches each system's own API takes; podzoo's are
`model.PREDICT_BATCH`), and podzoo's most frequent confusions (which language was taken
for which). The JSON holds those, every system's confusions, the sentences and every
prediction, so any figure can be recomputed. --plot writes a PNG: every language's accuracy
(podzoo's bars, worst first, each peer's as markers where it knows the language) and
podzoo's most frequent confusions.
"""

import argparse
import collections
import dataclasses
import sys
import time
from importlib import metadata
from typing import Callable, Sequence

from model_zoo.errors import ConfigError, UserError
from tasks.langid import data, train
from tasks.parallel import corpus
from tools import benchmark_common

DISTRIBUTIONS = ("jax", "langid", "lingua-language-detector", "pycld2")
UNKNOWN = "unknown"  # a system that gives no answer
WARM_UP = 8  # sentences predicted before timing (podzoo compiles its jitted call then)
Predictor = Callable[[Sequence[str]], list[str]]
# Where CLD2 spells a language otherwise, or splits Chinese by script instead of region.
CLD2_CODES = {"he": "iw", "nb": "no", "zh_TW": "zh-Hant", "zh_HK": "zh-Hant"}


def language_code(lang: str) -> str:
  """A corpus locale's ISO 639 code: "pt_BR" -> "pt", "sr@latin" -> "sr", "ast" -> "ast"."""
  return lang.partition("@")[0].partition("_")[0]


@dataclasses.dataclass(frozen=True)
class System:
  """A LangID system: the corpus languages it can name, and how it names them."""

  supported: Callable[[], set[str]]  # the codes the system can answer
  code: Callable[[str], str]  # corpus language -> the system's code for it
  predictor: Callable[[list[str]], Predictor]  # its codes for our languages -> predict fn

  def languages(self) -> list[str]:
    """The corpus languages, in corpus order, that the system can name."""
    supported = self.supported()
    return [lang for lang in corpus.LANGUAGES if self.code(lang) in supported]


def podzoo_predictor(codes: list[str]) -> Predictor:
  del codes  # podzoo answers in every corpus language
  langid_model = train.load_or_train()
  return lambda texts: langid_model.predict(texts)[0]


def _langid_identifier():
  from langid import langid as langid_py  # a peer: imported only if its system runs

  return langid_py.LanguageIdentifier.from_modelstring(langid_py.model)


def langid_predictor(codes: list[str]) -> Predictor:
  identifier = _langid_identifier()
  identifier.set_languages(codes)
  return lambda texts: [identifier.classify(text)[0] for text in texts]


def _lingua_codes() -> set[str]:
  import lingua  # a peer: imported only if its system runs

  return {lang.iso_code_639_1.name.lower() for lang in lingua.Language.all()}


def lingua_predictor(codes: list[str]) -> Predictor:
  import lingua

  detector = lingua.LanguageDetectorBuilder.from_iso_codes_639_1(
      *(lingua.IsoCode639_1.from_str(code) for code in codes)
  ).build()

  def predict(texts: Sequence[str]) -> list[str]:
    found = detector.detect_languages_in_parallel_of(list(texts))
    return [UNKNOWN if lang is None else lang.iso_code_639_1.name.lower() for lang in found]

  return predict


def _cld2_codes() -> set[str]:
  import pycld2  # a peer: imported only if its system runs

  names = set(pycld2.DETECTED_LANGUAGES)
  return {code for name, code in pycld2.LANGUAGES if name in names}


def cld2_predictor(codes: list[str]) -> Predictor:
  del codes  # CLD2 cannot be restricted
  import pycld2

  def one(text: str) -> str:
    try:
      code = pycld2.detect(text)[2][0][1]  # the top language's code, "un" for none
    except pycld2.error:
      return UNKNOWN
    return UNKNOWN if code == "un" else code

  return lambda texts: [one(text) for text in texts]


SYSTEMS: dict[str, System] = {
    "podzoo": System(lambda: set(corpus.LANGUAGES), lambda lang: lang, podzoo_predictor),
    "langid": System(lambda: set(_langid_identifier().nb_classes), language_code, langid_predictor),
    "lingua": System(_lingua_codes, language_code, lingua_predictor),
    "cld2": System(
        _cld2_codes, lambda lang: CLD2_CODES.get(lang, language_code(lang)), cld2_predictor
    ),
}


def accuracies(gold: Sequence[str], hits: Sequence[bool]) -> dict[str, float]:
  """Per-language accuracy (%) over the languages in `gold`, plus "macro" and "micro"."""
  per_language = {}
  for lang in dict.fromkeys(gold):
    right = [hit for g, hit in zip(gold, hits) if g == lang]
    per_language[lang] = 100.0 * sum(right) / len(right)
  micro = 100.0 * sum(hits) / len(gold)
  macro = sum(per_language.values()) / len(per_language)
  return {**per_language, "macro": macro, "micro": micro}


def confusions(gold: Sequence[str], predicted: Sequence[str], top: int) -> list[dict]:
  """The `top` most frequent (gold, predicted) errors: count, and rate among gold's sentences.

  Ties are broken by gold then predicted language, so the list is reproducible.
  """
  totals = collections.Counter(gold)
  errors = collections.Counter((g, p) for g, p in zip(gold, predicted) if g != p)
  ranked = sorted(errors.items(), key=lambda item: (-item[1], item[0]))[:top]
  return [{"gold": g, "predicted": p, "count": n, "rate": n / totals[g]} for (g, p), n in ranked]


def _timed(predict: Predictor, texts: list[str]) -> tuple[list[str], float]:
  """Predictions and sentences/s, after a warm-up call on the first few texts."""
  predict(texts[:WARM_UP])
  start = time.perf_counter()
  predictions = predict(texts)
  return predictions, len(texts) / (time.perf_counter() - start)


def score(
    name: str, texts: list[str], gold: list[str], podzoo: list[str] | None, top: int
) -> tuple[dict, list[str]]:
  """One system's results on the held-out sentences of its languages, and its predictions
  (UNKNOWN for the sentences of languages it lacks)."""
  system = SYSTEMS[name]
  languages = system.languages()
  codes = list(dict.fromkeys(system.code(lang) for lang in languages))
  chosen = [i for i, lang in enumerate(gold) if lang in languages]
  chosen_gold = [gold[i] for i in chosen]
  start = time.perf_counter()
  predict = system.predictor(codes)
  loading = time.perf_counter() - start
  predictions, per_second = _timed(predict, [texts[i] for i in chosen])
  gold_codes = [system.code(lang) for lang in chosen_gold]
  results = {
      "languages": languages,
      "codes": codes,
      "accuracy": accuracies(chosen_gold, [p == g for p, g in zip(predictions, gold_codes)]),
      "confusions": confusions(gold_codes, predictions, top),
      "sentences_per_second": per_second,
      "seconds_loading": loading,
  }
  if podzoo is not None and name != "podzoo":
    mapped = [system.code(podzoo[i]) for i in chosen]
    results["podzoo_on_these_languages"] = accuracies(
        chosen_gold, [m == g for m, g in zip(mapped, gold_codes)]
    )
  full = [UNKNOWN] * len(texts)
  for i, prediction in zip(chosen, predictions):
    full[i] = prediction
  return results, full


def compare(systems: Sequence[str], max_per_language: int | None, top: int = 20) -> dict:
  held_out = data.held_out(max_per_language)
  texts = [text for lang in corpus.LANGUAGES for text in held_out[lang]]
  gold = [lang for lang in corpus.LANGUAGES for _ in held_out[lang]]
  ordered = sorted(systems, key=lambda s: s != "podzoo")  # podzoo first: peers compare to it
  results, predictions = {}, {}
  for name in ordered:
    results[name], predictions[name] = score(name, texts, gold, predictions.get("podzoo"), top)
  return {
      "max_per_language": max_per_language,
      "counts": {lang: len(held_out[lang]) for lang in corpus.LANGUAGES},
      "systems": {name: results[name] for name in systems},
      "texts": texts,
      "gold": gold,
      "predictions": {name: predictions[name] for name in systems},
  }


def _table(header: list[str], rows: list[list[str]]) -> str:
  widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
  return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [header, *rows])


def format_table(results: dict, top: int = 15) -> str:
  systems = results["systems"]
  names = list(systems)
  counts = results["counts"]

  def cell(name: str, key: str) -> str:
    value = systems[name]["accuracy"].get(key)
    return "-" if value is None else f"{value:.1f}"

  rows = [[lang, str(n), *(cell(s, lang) for s in names)] for lang, n in counts.items()]
  for average in ("macro", "micro"):
    rows.append([average, "", *(cell(s, average) for s in names)])
  rows.append(["languages", "", *(str(len(systems[s]["languages"])) for s in names)])
  rows.append(["sents/s", "", *(f"{systems[s]['sentences_per_second']:.0f}" for s in names)])
  text = [_table(["lang", "n", *names], rows)]
  peers = [s for s in names if "podzoo_on_these_languages" in systems[s]]
  if peers:
    text.append("\npodzoo beside each peer, on the peer's languages and codes (macro / micro):")
    for s in peers:
      own, podzoo = systems[s]["accuracy"], systems[s]["podzoo_on_these_languages"]
      text.append(
          f"  {s:7} {len(systems[s]['languages'])} languages: {s} {own['macro']:.1f} / "
          f"{own['micro']:.1f}, podzoo {podzoo['macro']:.1f} / {podzoo['micro']:.1f}"
      )
  first = names[0]
  text.append(f"\n{first}'s most frequent confusions (gold -> predicted: count, % of gold):")
  text += [
      f"  {c['gold']} -> {c['predicted']}: {c['count']}, {100 * c['rate']:.1f}%"
      for c in systems[first]["confusions"][:top]
  ]
  return "\n".join(text)


def plot(results: dict, path: str, top: int = 20) -> None:
  """Per-language accuracy of every system (podzoo's order: worst first) and the first
  system's `top` most frequent confusions."""
  import matplotlib  # pylint: disable=import-outside-toplevel  (the [experiments] extra)

  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  systems = results["systems"]
  first, *peers = systems
  accuracy = {k: v for k, v in systems[first]["accuracy"].items() if k not in ("macro", "micro")}
  order = sorted(accuracy, key=lambda lang: (accuracy[lang], lang))
  figure, (by_language, confused) = pyplot.subplots(
      2, 1, figsize=(max(12, 0.16 * len(order)), 8), gridspec_kw={"height_ratios": [3, 2]}
  )
  x = range(len(order))
  by_language.bar(x, [accuracy[lang] for lang in order], color="lightgrey", label=first)
  for peer, marker in zip(peers, "ov^sD"):
    own = systems[peer]["accuracy"]
    known = [(i, own[lang]) for i, lang in enumerate(order) if lang in own]
    by_language.plot(*zip(*known), marker, markersize=4, linestyle="none", label=peer)
  by_language.set_xticks(list(x), order, rotation=90, fontsize=6)
  by_language.set(ylabel="accuracy (%)", xlim=(-1, len(order)))
  by_language.set_title(f"held-out accuracy per language ({first}: bars; peers on their languages)")
  by_language.legend(fontsize=8, loc="lower right")
  pairs = systems[first]["confusions"][:top]
  confused.bar(range(len(pairs)), [100 * c["rate"] for c in pairs])
  confused.set_xticks(
      range(len(pairs)), [f"{c['gold']}->{c['predicted']}" for c in pairs], rotation=60, fontsize=7
  )
  confused.set(ylabel="% of the gold language's sentences")
  confused.set_title(f"{first}'s most frequent confusions")
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  pyplot.close(figure)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m tools.langid_compare", allow_abbrev=False, description=__doc__.split("\n")[0]
  )
  parser.add_argument(
      "--max_per_language", type=int, default=None, help="first N held-out texts per language"
  )
  parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
  parser.add_argument(
      "--top_confusions", type=int, default=20, help="confusions kept per system in the JSON"
  )
  parser.add_argument("--json_out", default=None, help="write the results here (default: stdout)")
  parser.add_argument("--plot", default=None, help="write a PNG of the accuracies and confusions")
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
    if args.top_confusions < 1:
      raise ConfigError(f"--top_confusions must be >= 1; got {args.top_confusions}")
    results = compare(systems, args.max_per_language, args.top_confusions)
  except UserError as e:
    return benchmark_common.report_user_error(e)
  versions = {f"{d}_version": metadata.version(d) for d in DISTRIBUTIONS}
  results = {**versions, "corpus_fingerprint": corpus.fingerprint(), **results}
  if args.plot:
    plot(results, args.plot)
  benchmark_common.emit(results, format_table(results), args.json_out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
