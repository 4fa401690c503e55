import collections
import gettext
import math
import shutil
import unicodedata

import pytest
import tensorflow_datasets as tfds

from model_zoo.errors import ConfigError
from tasks import pipeline
from tasks.asr_lm import catalogs
from tasks.parallel import corpus, tfds_dataset, vocabulary
from tests.tasks import mo_files


def _gettext_pairs(lang: str, domain: str) -> set[tuple[str, str]]:
  """(English, translation) of a catalog as Python's gettext reads it, cleaned as the corpus."""
  with open(corpus.catalog_path(lang, domain), "rb") as f:
    catalog = gettext.GNUTranslations(f)._catalog
  pairs = set()
  for msgid, msgstr in catalog.items():
    if isinstance(msgid, tuple):  # plural forms: (msgid, n) keys; the corpus keeps form 0
      msgid, index = msgid
      if index:
        continue
    msgid = msgid.split("\x04")[-1]  # drop the context
    if msgid:
      pairs.add((corpus.clean(msgid), msgstr))
  return pairs


@pytest.mark.parametrize("lang,domain", [("de", "iso_4217"), ("el", "iso_15924"), ("fi", "gtk20")])
def test_pairs_are_the_catalogs_translations(lang, domain):
  pairs = set(corpus.pairs("en", lang, "train")) | set(corpus.pairs("en", lang, "validation"))
  expected = {
      (en, corpus.clean(tr))
      for en, tr in _gettext_pairs(lang, domain)
      if en and corpus.clean(tr) and corpus.clean(tr) != en
  }
  assert expected and expected <= pairs


def test_records_are_clean_split_and_translated():
  train, validation = corpus.split_records("train"), corpus.split_records("validation")
  assert len(train) > 5000 and len(validation) > 500
  assert not {r.key for r in train} & {r.key for r in validation}
  for record in train + validation:
    assert record.texts["en"] and len(record.texts) >= 2
    for lang, text in record.texts.items():
      assert lang in corpus.LANGUAGES
      assert text == unicodedata.normalize("NFKC", text) == text.strip()
      assert "%s" not in text
      assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in text)
      if lang != "en":
        assert text != record.texts["en"]
  for lang in corpus.LANGUAGES:  # every language is really there, in both splits
    big = lang in corpus.CORE_LANGUAGES  # the smallest others have ~850 and ~90
    assert len(corpus.monolingual(lang, "train")) > (3000 if big else 800)
    assert len(corpus.monolingual(lang, "validation")) > (300 if big else 80)


def _messages(translated: int, untranslated: int, tag: str) -> list[catalogs.Message]:
  """`translated` messages the corpus keeps, then `untranslated` and two more it drops."""
  return (
      [catalogs.Message(None, (f"{tag} {i}",), (f"{tag} übersetzt {i}",)) for i in range(translated)]
      + [catalogs.Message(None, (f"Left {tag} {i}",), (f"Left {tag} {i}",)) for i in range(untranslated)]
      + [
          catalogs.Message(None, ("_Open",), ("Open",)),  # the same once cleaned
          catalogs.Message(None, ("%s",), ("%s",)),  # nothing left once cleaned
      ]
  )  # fmt: skip


def _write_locale(locale_dir, lang: str, translated: int, untranslated: int = 0) -> None:
  """`lang`'s catalogs of the two test domains, the messages split 60/40 between them."""
  first = translated * 3 // 5
  mo_files.write_mo(
      corpus.catalog_path(lang, "one", locale_dir), _messages(first, untranslated, "one")
  )
  mo_files.write_mo(
      corpus.catalog_path(lang, "two", locale_dir), _messages(translated - first, 0, "two")
  )


def test_languages_are_english_the_core_then_every_locale_over_the_threshold(
    tmp_path, tmp_cache, monkeypatch
):
  monkeypatch.setattr(corpus, "DOMAINS", ("one", "two"))
  monkeypatch.setattr(corpus, "CORE_LANGUAGES", ("en", "fr", "de"))
  n = corpus.MIN_MESSAGES
  _write_locale(tmp_path, "fr", 10)  # a core language is in, however few messages
  _write_locale(tmp_path, "zz", n, untranslated=50)  # exactly the threshold: in
  _write_locale(tmp_path, "aa", n - 1, untranslated=200)  # one short: dropped ones don't count
  _write_locale(tmp_path, "mm", n + 500)
  _write_locale(tmp_path, "en_GB", 5)
  assert corpus.message_counts(tmp_path) == {
      "fr": 10,
      "zz": n,
      "aa": n - 1,
      "mm": n + 500,
      "en_GB": 5,
  }
  # de is core but has no catalogs: it keeps its place, and reading the corpus names the fix.
  assert corpus.languages(tmp_path) == ("en", "fr", "de", "mm", "zz")
  with pytest.raises(FileNotFoundError, match="libglib2.0-data.*iso-codes"):
    corpus.records(tmp_path)
  _write_locale(tmp_path, "de", 20)
  texts = collections.Counter(
      lang for split in corpus.records(tmp_path).values() for r in split for lang in r.texts
  )
  assert {lang: texts[lang] for lang in ("fr", "de", "mm", "zz")} == {
      "fr": 10, "de": 20, "mm": n + 500, "zz": n
  }  # fmt: skip
  # The counts come from the cache (here, of the catalogs with de's) until a catalog changes.
  corpus.message_counts.cache_clear()
  assert corpus.message_counts(tmp_path)["de"] == 20
  corpus.message_counts.cache_clear()
  with monkeypatch.context() as patch:
    patch.setattr(corpus, "_count_translations", lambda *_: pytest.fail("counted again"))
    assert corpus.languages(tmp_path) == ("en", "fr", "de", "mm", "zz")
  before = corpus.fingerprint(tmp_path)
  _write_locale(tmp_path, "aa", n, untranslated=200)
  corpus.message_counts.cache_clear()
  assert corpus.languages(tmp_path) == ("en", "fr", "de", "aa", "mm", "zz")
  assert corpus.fingerprint(tmp_path) != before


def test_the_machines_languages_follow_the_rule():
  counts = corpus.message_counts()
  assert corpus.LANGUAGES[: len(corpus.CORE_LANGUAGES)] == corpus.CORE_LANGUAGES
  assert corpus.CORE_LANGUAGES[0] == corpus.SOURCE_LANGUAGE == "en"
  rest = corpus.LANGUAGES[len(corpus.CORE_LANGUAGES) :]
  assert list(rest) == sorted(rest)
  assert set(rest) == {lang for lang, n in counts.items() if n >= corpus.MIN_MESSAGES} - set(
      corpus.CORE_LANGUAGES
  )
  assert len(corpus.LANGUAGES) > 80 and {"zh_TW", "sr@latin", "pt_BR", "dz"} <= set(rest)
  texts = collections.Counter(
      lang for split in corpus.SPLITS for r in corpus.split_records(split) for lang in r.texts
  )
  assert {lang: texts[lang] for lang in corpus.LANGUAGES[1:]} == {
      lang: counts[lang] for lang in corpus.LANGUAGES[1:]
  }


def test_languages_with_a_threshold_and_its_range():
  counts = corpus.message_counts()
  assert corpus.languages_with(corpus.MIN_MESSAGES) == corpus.LANGUAGES
  for threshold in (3000, 5000):
    expected = [lang for lang in corpus.LANGUAGES[1:] if counts[lang] >= threshold]
    assert corpus.languages_with(threshold) == ("en", *expected)
  most = max(counts[lang] for lang in corpus.LANGUAGES[1:])
  assert len(corpus.languages_with(most)) == 2
  for bad in (corpus.MIN_MESSAGES - 1, most + 1):
    with pytest.raises(ConfigError, match=rf"\[{corpus.MIN_MESSAGES}, {most}\].*; got {bad}$"):
      corpus.languages_with(bad)


def test_unknown_language_and_split_are_refused():
  with pytest.raises(ValueError, match="languages"):
    corpus.pairs("en", "xx", "train")
  with pytest.raises(ValueError, match="splits"):
    corpus.split_records("test")


def test_missing_catalog_names_the_packages(tmp_path, tmp_cache):
  with pytest.raises(FileNotFoundError, match="xkb-data"):
    corpus.records(tmp_path)


def test_fingerprint_follows_the_catalogs_bytes(tmp_path, tmp_cache):
  for lang in ("de", "fr"):
    shutil.copytree(corpus.LOCALE_DIR / lang / "LC_MESSAGES", tmp_path / lang / "LC_MESSAGES")
  before = corpus.fingerprint(tmp_path)
  assert corpus.fingerprint(tmp_path) == before
  path = corpus.catalog_path("fr", "iso_4217", tmp_path)
  path.write_bytes(path.read_bytes() + b"\0")
  assert corpus.fingerprint(tmp_path) != before


@pytest.mark.slow
def test_tfds_dataset_holds_the_corpus():
  source = tfds_dataset.prepare()
  name, data_dir = source.tfds_dataset.name, source.tfds_dataset.data_dir
  assert name == tfds_dataset.tfds_name()
  for split in corpus.SPLITS:
    got = {
        ex["key"].decode(): {k: v.decode() for k, v in ex.items() if k in corpus.LANGUAGES and v}
        for ex in tfds.as_numpy(tfds.load(name, split=split, data_dir=data_dir))
    }
    assert got == {r.key: r.texts for r in corpus.split_records(split)}
    assert source.num_input_examples(split) == len(got)


def test_vocabulary_has_the_special_tokens_and_round_trips_every_language():
  vocab = vocabulary.parallel_vocabulary()
  pipeline.check_special_tokens(vocab, vocabulary.SPECIAL_TOKENS)
  ids = {vocab.tokenizer.piece_to_id(piece) for piece in vocabulary.SPECIAL_TOKENS}
  assert len(ids) == len(vocabulary.SPECIAL_TOKENS) and vocab.unk_id not in ids
  for lang in corpus.LANGUAGES:
    for text in corpus.monolingual(lang, "validation"):
      assert vocab.decode(vocab.encode(text)) == text
  prompt = "Which language is this?\n\nOPTIONS:\n- German\n- Greek"
  assert vocab.decode(vocab.encode(prompt)) == prompt  # line breaks survive (Flan prompts)
  vocab_file = vocab.sentencepiece_model_file.removesuffix(".model") + ".vocab"
  with open(vocab_file, encoding="utf-8") as f:
    assert len(f.read().splitlines()) == vocab.tokenizer.get_piece_size()
  with pytest.raises(ValueError, match="languages"):
    vocabulary.language_tag("xx")


def test_sampled_counts_follow_the_temperature_formula():
  sizes = {"a": 100, "b": 1000, "c": 8000}
  for temperature in (1.0, 3.0, 1e9):
    counts = vocabulary.sampled_counts(sizes, 9101, temperature)
    weights = {lang: n ** (1 / temperature) for lang, n in sizes.items()}
    for lang, n in counts.items():
      assert abs(n - 9101 * weights[lang] / sum(weights.values())) < 1
    assert sum(counts.values()) == 9101
  with pytest.raises(ConfigError, match="temperature must be > 0"):
    vocabulary.sampled_counts(sizes, 10, 0.0)


def test_vocabulary_text_is_each_languages_share_at_the_temperature():
  texts = {lang: corpus.monolingual(lang, "train") for lang in corpus.LANGUAGES}
  total = sum(map(len, texts.values()))
  weights = {lang: len(t) ** (1 / vocabulary.TEMPERATURE) for lang, t in texts.items()}
  draws = vocabulary.sampled_lines()
  assert list(draws) == list(corpus.LANGUAGES)
  assert sum(map(len, draws.values())) == total
  for lang, draw in draws.items():
    assert abs(len(draw) - total * weights[lang] / math.fsum(weights.values())) < 1
    times = collections.Counter(draw)
    k = len(draw) // len(texts[lang])
    assert set(times) <= set(texts[lang]) and set(times.values()) <= {k, k + 1}
    assert k == 0 or len(times) == len(set(texts[lang]))  # every line at least k times
  assert len(draws["br"]) > 2 * len(texts["br"]) and len(draws["en"]) < 0.6 * len(texts["en"])
  lines = [line for draw in draws.values() for line in draw]
  assert vocabulary.train_text_file().read_text(encoding="utf-8") == "\n".join(lines) + "\n"


def test_untranslated_are_the_catalog_strings_left_as_the_english():
  english = set(corpus.untranslated("de", "train")) | set(corpus.untranslated("de", "validation"))
  expected = set()
  for domain in ("iso_4217", "glib20"):
    expected |= {en for en, tr in _gettext_pairs("de", domain) if en and corpus.clean(tr) == en}
  assert expected and expected <= english
