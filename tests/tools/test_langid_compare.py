"""tools/langid_compare: the JSON's accuracies recomputed from predictions made here directly."""

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


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  out = tmp_path_factory.mktemp("compare") / "compare.json"
  assert langid_compare.main(["--max_per_language", str(PER_LANGUAGE), "--json_out", str(out)]) == 0
  return json.loads(out.read_text())


def _direct_predictions(texts: list[str]) -> dict[str, list[str]]:
  """Each system called here, as its documentation shows, restricted to the 20 languages."""
  identifier = langid.langid.LanguageIdentifier.from_modelstring(langid.langid.model)
  identifier.set_languages(list(corpus.LANGUAGES))
  detector = lingua.LanguageDetectorBuilder.from_iso_codes_639_1(
      *(getattr(lingua.IsoCode639_1, lang.upper()) for lang in corpus.LANGUAGES)
  ).build()
  lingua_answers = [detector.detect_language_of(text) for text in texts]
  cld2_codes = [pycld2.detect(text)[2][0][1] for text in texts]
  return {
      "podzoo": train.load_or_train().predict(texts)[0],
      "langid": [identifier.classify(text)[0] for text in texts],
      "lingua": [a.iso_code_639_1.name.lower() if a else "unknown" for a in lingua_answers],
      "cld2": ["unknown" if code == "un" else code for code in cld2_codes],
  }


def test_every_system_labels_the_same_held_out_sentences(results):
  held_out = data.held_out(PER_LANGUAGE)
  assert results["texts"] == [t for lang in corpus.LANGUAGES for t in held_out[lang]]
  assert results["gold"] == [lang for lang in corpus.LANGUAGES for _ in held_out[lang]]
  assert results["counts"] == {lang: PER_LANGUAGE for lang in corpus.LANGUAGES}
  assert results["predictions"] == _direct_predictions(results["texts"])


def test_accuracies_are_recomputed_from_the_predictions(results):
  gold = np.array(results["gold"])
  for system, predicted in results["predictions"].items():
    correct = np.array(predicted) == gold
    per_language = {lang: 100.0 * correct[gold == lang].mean() for lang in corpus.LANGUAGES}
    accuracy = results["accuracy"][system]
    for lang in corpus.LANGUAGES:
      assert accuracy[lang] == pytest.approx(per_language[lang])
    assert accuracy["macro"] == pytest.approx(np.mean(list(per_language.values())))
    assert accuracy["micro"] == pytest.approx(100.0 * correct.mean())


def test_table_has_a_row_per_language_and_the_averages(results):
  rows = {
      line.split()[0]: line.split() for line in langid_compare.format_table(results).splitlines()
  }
  assert rows["lang"] == ["lang", "n", "podzoo", "langid", "lingua", "cld2"]
  assert set(rows) == {"lang", "macro", "micro", *corpus.LANGUAGES}
  for lang in corpus.LANGUAGES:
    assert rows[lang][1] == str(PER_LANGUAGE)
    assert float(rows[lang][2]) == pytest.approx(results["accuracy"]["podzoo"][lang], abs=0.05)


def test_module_level_langid_is_not_restricted(results):
  del results  # the tool has run in this process
  identifier = langid.langid.identifier  # None until someone calls langid.classify
  assert identifier is None or len(identifier.nb_classes) > len(corpus.LANGUAGES)


def test_unknown_system_is_refused(capsys):
  assert langid_compare.main(["--systems", "podzoo,fasttext"]) == 1
  assert "fasttext" in capsys.readouterr().err
