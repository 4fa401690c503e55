"""Each filter on hand-made lines, the pipeline's per-filter counts, and tools/filter_corpus."""

import collections
import json

import numpy as np
import pytest

from tasks.langid import filters, train
from tasks.parallel import corpus
from tools import filter_corpus

GERMAN = "Die Datei konnte nicht geöffnet werden"
# German-looking non-words: LangID says German, no word is in German's top-20k list.
GERMAN_NONWORDS = "Schnurzelbaum Wickelgrüpfung Plätzerhaftigkeit"


@pytest.fixture(scope="module")
def langid():
  return train.load_or_train()


@pytest.mark.parametrize(
    "line,claimed,kept",
    [
        (GERMAN, "de", True),
        ("The file could not be opened because it does not exist", "de", False),
        ("Impossibile aprire il file", "es", False),  # Italian
        ("Impossibile aprire il file", "it", True),
        ("Не удалось открыть файл", "ru", True),
        ("Δεν ήταν δυνατό το άνοιγμα του αρχείου", "ru", False),
        ("Nie można otworzyć pliku", "pl", True),
    ],
)
def test_langid_filter_keeps_lines_in_the_claimed_language(langid, line, claimed, kept):
  assert filters.LangIdFilter(langid=langid).keep([line], claimed) == [kept]


def test_langid_threshold_is_inclusive(langid):
  [predicted], [confidence] = langid.predict([GERMAN_NONWORDS])
  assert predicted == "de" and confidence < 1.0
  at = filters.LangIdFilter(threshold=float(confidence), langid=langid)
  above = filters.LangIdFilter(threshold=float(np.nextafter(confidence, 2.0)), langid=langid)
  assert at.keep([GERMAN_NONWORDS], "de") == [True]
  assert above.keep([GERMAN_NONWORDS], "de") == [False]


def test_wordlist_fraction_by_hand():
  wordlist = filters.WordlistFilter()  # top 20k words, at least 20% of them
  # "zzxq" is the only word out of five not in English's list; digits are not words.
  assert wordlist.in_list_fraction("The house is big, zzxq 2024", "en") == pytest.approx(4 / 5)
  assert wordlist.in_list_fraction("xqzt blorf vrrkz", "en") == 0.0
  assert wordlist.in_list_fraction("2024 -- !!", "en") == 0.0  # no words at all
  lines = ["The house is big, zzxq 2024", "xqzt blorf vrrkz", "hello"]
  assert wordlist.keep(lines, "en") == [True, False, True]
  assert wordlist.keep([GERMAN, GERMAN_NONWORDS], "de") == [True, False]
  assert filters.WordlistFilter(min_fraction=0.9).keep(lines[:1], "en") == [False]


def test_wordlist_is_not_applied_to_a_language_wordfreq_lacks():
  # Estonian: wordfreq has no list, so the filter cannot judge and passes every line.
  assert not filters.WordlistFilter().applies_to("et")
  report = filters.run_filters(
      ["Tere maailm", "x"], "et", [filters.WordlistFilter(), filters.LengthFilter()]
  )
  assert report.not_applied == ("wordlist",)
  assert report.dropped == {"wordlist": 0, "length": 1} and report.kept == ["Tere maailm"]
  assert "*" in filters.format_table([report])


def test_length_filter_bounds_are_inclusive():
  length = filters.LengthFilter(min_chars=3, max_chars=20, min_words=2, max_words=3)
  lines = ["ab", "abc", "hello there", "one two three", "one two three four", "a b " + "c" * 17]
  assert length.keep(lines, "en") == [False, False, True, True, False, False]
  assert filters.LengthFilter().keep(["--- ...", "OK", "x"], "en") == [False, True, False]


def test_repetition_filter():
  repetition = filters.RepetitionFilter()
  lines = [
      "the the the the the",  # one word is all the words
      "der der der Hund",  # 3 of 4 words
      "buy now buy now buy now",  # half the words, but 3 of 5 bigrams repeat
      "Bora Bora",  # too short to judge
      "one two three one",  # "one" is half the words, not more; no bigram repeats
      "Die Datei konnte nicht gelesen werden",
  ]
  assert repetition.keep(lines, "en") == [False, False, False, True, True, True]
  lenient = filters.RepetitionFilter(max_repeated_bigram_share=0.6)
  assert lenient.keep(["buy now buy now buy now"], "en") == [True]


def test_dedup_keeps_the_first_after_case_punctuation_and_space_normalisation():
  lines = ["Hello, World!", "hello world", "Hello   World", "Hello World 2", "Straße", "STRASSE."]
  assert filters.DedupFilter().keep(lines, "en") == [True, False, False, True, True, False]
  assert filters.dedup_key(" Grüß  Gott!!") == "grüss gott"


def test_pipeline_counts_each_line_once_by_the_first_filter_that_drops_it(langid):
  # (line, the first filter of the default order that drops it, or None)
  lines = [
      (GERMAN, None),
      ("%%", "length"),  # no words: the wordlist filter would drop it too
      ("the the the the the", "repetition"),  # also English: langid would drop it too
      ("The file could not be opened", "langid"),
      (GERMAN_NONWORDS, "wordlist"),
      ("die Datei konnte nicht geöffnet werden!", "dedup"),
      ("The THE the the the.", "repetition"),  # a duplicate, but repetition comes first
      ("Nicht genug Speicher", None),
  ]
  report = filters.run_filters([l for l, _ in lines], "de", filters.default_filters(langid))
  assert report.reasons == tuple(reason for _, reason in lines)
  expected = collections.Counter(reason for _, reason in lines if reason)
  assert report.filter_names == ("length", "repetition", "langid", "wordlist", "dedup")
  assert report.dropped == {name: expected[name] for name in report.filter_names}
  assert report.kept == [GERMAN, "Nicht genug Speicher"]
  # The lines counted once really fail the later filters too.
  assert filters.LangIdFilter(langid=langid).keep(["the the the the the"], "de") == [False]
  assert filters.WordlistFilter().keep(["%%"], "de") == [False]
  summary = report.summary()
  assert summary["lines"] == len(lines) and summary["kept"] == 2
  assert summary["examples"]["repetition"] == ["the the the the the", "The THE the the the."]


def test_table_has_a_row_per_language_and_the_totals(langid):
  reports = [
      filters.run_filters(
          ["Hallo Welt", "x", "Hallo, Welt"], "de", filters.default_filters(langid)
      ),
      filters.run_filters(["Bonjour le monde", "y"], "fr", filters.default_filters(langid)),
  ]
  rows = {line.split()[0]: line.split() for line in filters.format_table(reports).splitlines()}
  assert rows["lang"] == ["lang", "lines", *reports[0].filter_names, "kept", "kept", "%"]
  assert rows["de"][1] == "3" and rows["fr"][1] == "2"
  for i, name in enumerate(reports[0].filter_names, start=2):
    assert int(rows["all"][i]) == sum(r.dropped[name] for r in reports)
  assert int(rows["all"][-2]) == sum(len(r.kept) for r in reports)


def test_bad_settings_are_refused():
  with pytest.raises(ValueError, match="threshold"):
    filters.LangIdFilter(threshold=1.5)
  with pytest.raises(ValueError, match="min_fraction"):
    filters.WordlistFilter(min_fraction=-0.1)
  with pytest.raises(ValueError, match="top_n"):
    filters.WordlistFilter(top_n=0)
  with pytest.raises(ValueError, match="min_chars <= max_chars"):
    filters.LengthFilter(min_chars=5, max_chars=2)
  with pytest.raises(ValueError, match="min_words"):
    filters.RepetitionFilter(min_words=1)
  with pytest.raises(ValueError, match="leave LangIdFilter out"):
    filters.LangIdFilter().keep(["Habari ya asubuhi"], "sw")  # Swahili: no catalogs here
  with pytest.raises(ValueError, match="distinct"):
    filters.run_filters(["a"], "en", [filters.DedupFilter(), filters.DedupFilter()])


def test_filter_corpus_tool_counts_what_the_pipeline_drops(tmp_path, capsys, langid):
  out = tmp_path / "filtered.json"
  assert filter_corpus.main(["--languages", "de,el", "--json_out", str(out)]) == 0
  results = json.loads(out.read_text())
  table = capsys.readouterr().out
  for lang in ("de", "el"):
    lines = corpus.monolingual(lang, "train")
    expected = filters.run_filters(lines, lang, filters.default_filters(langid))
    got = results["languages"][lang]
    assert got["lines"] == len(lines) == got["kept"] + sum(got["dropped"].values())
    assert got["dropped"] == expected.dropped and got["kept"] == len(expected.kept)
    assert any(row.split()[:2] == [lang, str(len(lines))] for row in table.splitlines())
  assert filter_corpus.main(["--languages", "de,xx"]) == 1
  assert filter_corpus.main(["--languages", "de", "--langid_threshold", "2"]) == 1


def test_filter_corpus_catches_strings_the_catalogs_left_in_english(tmp_path, langid):
  out = tmp_path / "filtered.json"
  args = ["--languages", "de", "--split", "validation", "--with_untranslated"]
  assert filter_corpus.main([*args, "--json_out", str(out)]) == 0
  got = json.loads(out.read_text())["untranslated"]["de"]
  lines = corpus.monolingual("de", "validation")
  english = corpus.untranslated("de", "validation")
  assert english and not set(english) & set(lines)
  report = filters.run_filters(lines + list(english), "de", filters.default_filters(langid))
  reasons = collections.Counter(report.reasons[len(lines) :])
  assert got["lines"] == len(english) and got["kept"] == reasons[None]
  assert got["dropped"] == {name: reasons[name] for name in report.filter_names}
  # Catalog strings left in English under "de": LangID drops most of them.
  assert got["dropped"]["langid"] > 0.8 * len(english)
