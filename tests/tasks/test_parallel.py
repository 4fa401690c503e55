import gettext
import shutil
import unicodedata

import pytest
import tensorflow_datasets as tfds

from tasks import pipeline
from tasks.parallel import corpus, tfds_dataset, vocabulary


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
    assert len(corpus.monolingual(lang, "train")) > 3000
    assert len(corpus.monolingual(lang, "validation")) > 300


def test_unknown_language_and_split_are_refused():
  with pytest.raises(ValueError, match="languages"):
    corpus.pairs("en", "xx", "train")
  with pytest.raises(ValueError, match="splits"):
    corpus.split_records("test")


def test_missing_catalog_names_the_packages(tmp_path):
  with pytest.raises(FileNotFoundError, match="xkb-data"):
    corpus.records(tmp_path)


def test_fingerprint_follows_the_catalogs_bytes(tmp_path):
  for lang in ("de", "fr"):
    shutil.copytree(corpus.LOCALE_DIR / lang / "LC_MESSAGES", tmp_path / lang / "LC_MESSAGES")
  before = corpus.fingerprint(tmp_path)
  assert corpus.fingerprint(tmp_path) == before
  path = corpus.catalog_path("fr", "iso_4217", tmp_path)
  path.write_bytes(path.read_bytes() + b"\0")
  assert corpus.fingerprint(tmp_path) != before


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


def test_untranslated_are_the_catalog_strings_left_as_the_english():
  english = set(corpus.untranslated("de", "train")) | set(corpus.untranslated("de", "validation"))
  expected = set()
  for domain in ("iso_4217", "glib20"):
    expected |= {en for en, tr in _gettext_pairs("de", domain) if en and corpus.clean(tr) == en}
  assert expected and expected <= english
