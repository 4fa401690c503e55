"""tools/langid_compare: the JSON's figures recomputed from predictions made here directly."""

import json

import langid
import lingua
import numpy as np
import pycld2
import pytest

from tasks.langid import data, train
from tasks.parallel import corpus
from tools import langid_compare

PER_LANGUAGE = 4
PEERS = ("langid", "lingua", "cld2")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  out = tmp_path_factory.mktemp("compare") / "compare.json"
  assert langid_compare.main(["--max_per_language", str(PER_LANGUAGE), "--json_out", str(out)]) == 0
  return json.loads(out.read_text())


def base(lang: str) -> str:
  return lang.split("@")[0].split("_")[0]


def cld2_code(lang: str) -> str:
  return {"he": "iw", "nb": "no", "zh_TW": "zh-Hant", "zh_HK": "zh-Hant"}.get(lang, base(lang))


def peer_codes() -> dict[str, set[str]]:
  """The codes each peer can answer, read from the peer here."""
  identifier = langid.langid.LanguageIdentifier.from_modelstring(langid.langid.model)
  detectable = set(pycld2.DETECTED_LANGUAGES)
  return {
      "langid": set(identifier.nb_classes),
      "lingua": {lang.iso_code_639_1.name.lower() for lang in lingua.Language.all()},
      "cld2": {code for name, code in pycld2.LANGUAGES if name in detectable},
  }


CODE = {"podzoo": lambda lang: lang, "langid": base, "lingua": base, "cld2": cld2_code}


def _direct_predictions(texts: list[str], gold: list[str]) -> dict[str, list[str]]:
  """Each system called here, as its documentation shows, on the sentences of its languages
  and restricted to their codes where it can be; "unknown" for the other sentences."""
  supported = peer_codes()
  codes = {
      name: sorted({CODE[name](g) for g in gold if CODE[name](g) in supported[name]})
      for name in PEERS
  }
  identifier = langid.langid.LanguageIdentifier.from_modelstring(langid.langid.model)
  identifier.set_languages(codes["langid"])
  detector = lingua.LanguageDetectorBuilder.from_iso_codes_639_1(
      *(getattr(lingua.IsoCode639_1, code.upper()) for code in codes["lingua"])
  ).build()

  def lingua_one(text):
    answer = detector.detect_language_of(text)
    return answer.iso_code_639_1.name.lower() if answer else "unknown"

  def cld2_one(text):
    code = pycld2.detect(text)[2][0][1]
    return "unknown" if code == "un" else code

  predict = {"langid": lambda t: identifier.classify(t)[0], "lingua": lingua_one, "cld2": cld2_one}
  direct = {"podzoo": train.load_or_train().predict(texts)[0]}
  for name in PEERS:
    direct[name] = [
        predict[name](t) if CODE[name](g) in supported[name] else "unknown"
        for t, g in zip(texts, gold)
    ]
  return direct


@pytest.mark.slow
def test_every_system_labels_the_same_held_out_sentences(results):
  held_out = data.held_out(PER_LANGUAGE)
  assert results["texts"] == [t for lang in corpus.LANGUAGES for t in held_out[lang]]
  assert results["gold"] == [lang for lang in corpus.LANGUAGES for _ in held_out[lang]]
  assert results["counts"] == {lang: PER_LANGUAGE for lang in corpus.LANGUAGES}
  assert results["predictions"] == _direct_predictions(results["texts"], results["gold"])


@pytest.mark.slow
def test_each_peer_is_scored_on_the_languages_it_knows(results):
  supported = peer_codes()
  systems = results["systems"]
  assert systems["podzoo"]["languages"] == list(corpus.LANGUAGES)
  for name in PEERS:
    expected = [lang for lang in corpus.LANGUAGES if CODE[name](lang) in supported[name]]
    assert systems[name]["languages"] == expected
    assert set(corpus.CORE_LANGUAGES) <= set(expected) < set(corpus.LANGUAGES)
  assert {"zh_TW", "pt_BR", "sr@latin"} <= set(systems["langid"]["languages"])
  assert "ast" not in systems["langid"]["languages"] and "dz" not in systems["lingua"]["languages"]


@pytest.mark.slow
def test_accuracies_are_recomputed_from_the_predictions(results):
  gold = np.array(results["gold"])
  podzoo = results["predictions"]["podzoo"]
  for system, entry in results["systems"].items():
    code = CODE[system]
    chosen = np.isin(gold, entry["languages"])
    hits = np.array([code(p) == code(g) for p, g in zip(results["predictions"][system], gold)])
    podzoo_hits = np.array([code(p) == code(g) for p, g in zip(podzoo, gold)])
    for name, right in ((system, hits), ("podzoo", podzoo_hits)):
      accuracy = entry["accuracy"] if name == system else entry.get("podzoo_on_these_languages")
      if accuracy is None:
        continue
      per_language = {lang: 100.0 * right[gold == lang].mean() for lang in entry["languages"]}
      assert {k: accuracy[k] for k in per_language} == pytest.approx(per_language)
      assert accuracy["macro"] == pytest.approx(np.mean(list(per_language.values())))
      assert accuracy["micro"] == pytest.approx(100.0 * right[chosen].mean())
    assert entry["sentences_per_second"] > 0
  assert all("podzoo_on_these_languages" in results["systems"][name] for name in PEERS)


def test_confusions_count_and_rank_the_errors():
  gold = ["pt"] * 4 + ["pt_BR"] * 5 + ["nb"] * 2 + ["nn"]
  predicted = ["pt", "pt_BR", "pt_BR", "pt"] + ["pt"] * 3 + ["pt_BR"] * 2 + ["nn", "nb", "nb"]
  expected = [
      {"gold": "pt_BR", "predicted": "pt", "count": 3, "rate": 0.6},
      {"gold": "pt", "predicted": "pt_BR", "count": 2, "rate": 0.5},
      {"gold": "nb", "predicted": "nn", "count": 1, "rate": 0.5},  # ties: by gold language
      {"gold": "nn", "predicted": "nb", "count": 1, "rate": 1.0},
  ]
  assert langid_compare.confusions(gold, predicted, top=10) == expected
  assert langid_compare.confusions(gold, predicted, top=2) == expected[:2]
  assert langid_compare.confusions(gold, gold, top=5) == []


@pytest.mark.slow
def test_table_has_a_row_per_language_the_averages_and_the_confusions(results):
  table = langid_compare.format_table(results)
  rows = {line.split()[0]: line.split() for line in table.split("\n\n")[0].splitlines()}
  assert rows["lang"] == ["lang", "n", "podzoo", "langid", "lingua", "cld2"]
  assert set(rows) == {"lang", "macro", "micro", "languages", "sents/s", *corpus.LANGUAGES}
  for lang in corpus.LANGUAGES:
    assert rows[lang][1] == str(PER_LANGUAGE)
    assert float(rows[lang][2]) == pytest.approx(
        results["systems"]["podzoo"]["accuracy"][lang], abs=0.05
    )
  assert rows["ast"][3] == "-"  # langid.py has no Asturian
  assert rows["languages"][1:] == [
      str(len(results["systems"][s]["languages"])) for s in rows["lang"][2:]
  ]
  first = results["systems"]["podzoo"]["confusions"][0]
  assert f"  {first['gold']} -> {first['predicted']}: {first['count']}," in table


@pytest.mark.slow
def test_module_level_langid_is_not_restricted(results):
  del results  # the tool has run in this process
  identifier = langid.langid.identifier  # None until someone calls langid.classify
  assert identifier is None or len(identifier.nb_classes) > 20


def test_bad_flags_are_refused(capsys):
  assert langid_compare.main(["--systems", "podzoo,fasttext"]) == 1
  assert "fasttext" in capsys.readouterr().err
  assert langid_compare.main(["--top_confusions", "0"]) == 1
  assert "--top_confusions must be >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_plot_writes_one_bar_per_language_and_per_confusion(results, tmp_path, monkeypatch):
  from matplotlib import axes  # pylint: disable=import-outside-toplevel

  bars = []
  real_bar = axes.Axes.bar
  monkeypatch.setattr(
      axes.Axes,
      "bar",
      lambda self, x, *a, **k: bars.append(len(list(x))) or real_bar(self, x, *a, **k),
  )
  png = tmp_path / "langid.png"
  langid_compare.plot(results, str(png), top=5)
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
  languages = len(results["systems"]["podzoo"]["accuracy"]) - 2  # less macro and micro
  assert bars == [languages, min(5, len(results["systems"]["podzoo"]["confusions"]))]
