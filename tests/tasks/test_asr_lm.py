import collections
import gettext
import pathlib
import re

import numpy as np
import pytest
import seqio
from num2words import num2words
from scipy import stats

from tasks import pipeline
from tasks.asr_lm import catalogs, corpus, normalize
from tasks.asr_lm import tasks as asr_lm_tasks
from tests.tasks import mo_files

LENGTHS = {"targets": 64}
SPOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*(?: [^\W\d_]+(?:'[^\W\d_]+)*)*")
GIN_FILE = pathlib.Path(__file__).parents[2] / "gin" / "mixtures" / "asr_lm.gin"


def words(text: str) -> str:
  """num2words output as spoken form: its words, lowercase, nothing else."""
  return " ".join(re.findall(r"[^\W\d_]+", text.lower()))


def is_spoken(text: str) -> bool:
  return text == text.lower() and SPOKEN.fullmatch(text) is not None


# (lang, written, spoken): punctuation, placeholders and accelerators as catalogs have them.
HAND_MADE = [
    ("en", "_Open “%s”… (%1$s) {name}!", "open"),
    ("en", "Don't stop — it's 'quoted', e-mail & Fi_le", "don't stop it's quoted e mail file"),
    ("de", "Datei »%s« konnte nicht geöffnet werden: %s", "datei konnte nicht geöffnet werden"),
    ("es", "¿Desea _guardar los cambios en «%-10s»?", "desea guardar los cambios en"),
    ("fr", "&Fichier : l’élément « %d » n’existe pas.", "fichier l'élément n'existe pas"),
    ("it", "Impossibile aprire l'archivio “%s” &amp; %%", "impossibile aprire l'archivio"),
    ("pl", "Błąd: nie można odczytać {path}. ŻÓŁĆ", "błąd nie można odczytać żółć"),
    ("pt", "A_brir %.*s ficheiro(s) às %H:%M", "abrir ficheiro s às"),
    ("ru", "_Выполнить «%s»? Ёлка", "выполнить ёлка"),
]
SENTENCE = {  # "<n>" is replaced by a number
    "en": ("Copy <n> files", "copy {} files"),
    "de": ("<n> Dateien kopieren", "{} dateien kopieren"),
    "es": ("Copiar <n> archivos", "copiar {} archivos"),
    "fr": ("Copier <n> fichiers", "copier {} fichiers"),
    "it": ("Copia <n> file", "copia {} file"),
    "pl": ("Kopiuj <n> plików", "kopiuj {} plików"),
    "pt": ("Copiar <n> ficheiros", "copiar {} ficheiros"),
    "ru": ("Скопировать <n> файлов", "скопировать {} файлов"),
}
ORDINALS = {"en": ["1st", "2nd", "3rd", "21st"], "fr": ["2e", "1er"], "es": ["1º"], "pt": ["3º"]}


@pytest.mark.parametrize("lang,written,spoken", HAND_MADE)
def test_spoken_form_of_hand_made_lines(lang, written, spoken):
  assert normalize.spoken_form(written, lang) == spoken
  assert normalize.spoken_form(spoken, lang) == spoken


@pytest.mark.parametrize("lang", sorted(SENTENCE))
def test_numbers_are_num2words_words(lang):
  written, spoken = SENTENCE[lang]
  style = normalize.NUMBER_STYLES[lang]
  for n in (0, 7, 21, 1999, 123456):
    got = normalize.spoken_form(written.replace("<n>", str(n)), lang)
    assert got == spoken.format(words(num2words(n, lang=lang)))
  assert normalize.spoken_form(f"2{style.decimal_mark}5", lang) == words(num2words(2.5, lang=lang))
  if style.group_mark:
    grouped = f"1{style.group_mark}000{style.group_mark}000"
    assert normalize.spoken_form(grouped, lang) == words(num2words(10**6, lang=lang))
  for ordinal in ORDINALS.get(lang, []):
    n = int(re.match(r"\d+", ordinal)[0])
    expected = words(num2words(n, lang=lang, to="ordinal"))
    assert normalize.spoken_form(ordinal, lang) == expected


def test_digits_inside_words_and_long_numbers():
  assert normalize.spoken_form("MP3 x86_64 UTF-8", "en") == (
      "mp three x eighty six sixty four utf eight"
  )
  assert normalize.spoken_form("1" * 20, "en") == " ".join(["one"] * 20)
  with pytest.raises(ValueError, match="'xx' is not one of"):
    normalize.spoken_form("text", "xx")


def test_every_line_is_spoken_and_a_fixed_point():
  for lang in corpus.LANGUAGES:
    for split in corpus.SPLITS:
      lines = corpus.split_lines(lang, split)
      assert lines and all(is_spoken(line) for line in lines), (lang, split)
      assert all(normalize.spoken_form(line, lang) == line for line in lines), (lang, split)


def test_splits_are_disjoint_and_deterministic():
  before = {lang: corpus.splits(lang) for lang in corpus.LANGUAGES}
  corpus.splits.cache_clear()
  for lang in corpus.LANGUAGES:
    train, validation = corpus.split_lines(lang, "train"), corpus.split_lines(lang, "validation")
    assert corpus.splits(lang) == before[lang]
    assert set(train).isdisjoint(validation)
    assert 0.05 < len(validation) / (len(train) + len(validation)) < 0.2
    assert len(train) > 2000


CATALOG = [
    catalogs.Message(None, ("Open File",), ("Datei öffnen",)),
    catalogs.Message(None, ("_Save",), ("_Save",)),  # untranslated English
    catalogs.Message(None, ("Save _As",), ("Save As",)),  # untranslated, accelerator dropped
    catalogs.Message(None, ("A4",), ("A4",)),  # language-neutral code
    catalogs.Message("Stock label", ("_Close",), ("_Schließen",)),
    catalogs.Message(None, ("%d file", "%d files"), ("%d Datei", "%d files")),
    catalogs.Message(None, ("%s",), ("%s",)),  # nothing to say in any language
]


@pytest.mark.parametrize("order", ["<", ">"])
def test_read_mo_agrees_with_gettext(tmp_path, order):
  path = tmp_path / "test.mo"
  mo_files.write_mo(path, CATALOG, order)
  assert sorted(catalogs.read_mo(path), key=repr) == sorted(CATALOG, key=repr)
  with open(path, "rb") as f:
    translations = gettext.GNUTranslations(f)
  for m in CATALOG:
    if len(m.msgids) == 2:
      got = tuple(translations.ngettext(*m.msgids, n) for n in (1, 2))
    elif m.context:
      got = (translations.pgettext(m.context, m.msgids[0]),)
    else:
      got = (translations.gettext(m.msgids[0]),)
    assert got == m.msgstrs


def test_untranslated_english_is_filtered(tmp_path, monkeypatch):
  monkeypatch.setattr(corpus, "DOMAINS", ("test",))
  monkeypatch.setattr(corpus, "LANGUAGES", ("en", "de"))
  mo_files.write_mo(tmp_path / "de" / "LC_MESSAGES" / "test.mo", CATALOG, "<")
  kept = [text for _, text in corpus.written_texts("de", tmp_path)]
  assert sorted(kept) == ["%d Datei", "Datei öffnen", "_Schließen"]
  german = corpus.splits("de", tmp_path)
  assert sorted(german["train"] + german["validation"]) == ["datei", "datei öffnen", "schließen"]
  english = corpus.splits("en", tmp_path)
  assert "save as" in english["train"] + english["validation"]
  with pytest.raises(FileNotFoundError, match="iso-codes"):
    corpus.read_catalogs("fr", tmp_path)


def _assert_spoken_tokens(vocab: seqio.SentencePieceVocabulary, ids: np.ndarray) -> None:
  """Every id is pad, EOS, a piece of letters and apostrophes, or a byte of a non-ASCII letter."""
  sp = vocab.tokenizer
  for i in set(ids.ravel().tolist()) - {0, 1}:
    piece = sp.id_to_piece(i)
    if sp.is_byte(i):
      assert int(piece[1:-1], 16) >= 0x80, piece
    else:
      assert i != sp.unk_id(), "a character the vocabulary cannot spell"
      assert all(c.isalpha() or c in "'\u2581" for c in piece), piece


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,split",
    [(asr_lm_tasks.task_name(lang), "train") for lang in corpus.LANGUAGES]
    + [(asr_lm_tasks.MIXTURE_NAME, "train"), (asr_lm_tasks.MIXTURE_NAME, "validation")],
)
def test_batches_have_declared_shape_and_spoken_tokens(name, split):
  # Packed as gin/runs/pretrain.gin trains; unshuffled, which skips filling the
  # full-corpus shuffle buffers (slow, and not what is tested here).
  pack = split == "train"
  batch = next(pipeline.get_batch_iterator(name, LENGTHS, split, 8, shuffle=False, pack=pack))
  packing = {"decoder_segment_ids", "decoder_positions"} if pack else set()
  assert (
      set(batch)
      == {
          "decoder_target_tokens",
          "decoder_input_tokens",
          "decoder_loss_weights",
      }
      | packing
  )
  assert all(v.shape == (8, 64) for v in batch.values())
  assert (batch["decoder_target_tokens"] > 1).any()
  _assert_spoken_tokens(asr_lm_tasks.vocabulary(), batch["decoder_target_tokens"])


def test_vocabulary_matches_gin_and_covers_the_text():
  assert pipeline.vocab_size(asr_lm_tasks.MIXTURE_NAME) == asr_lm_tasks.VOCAB_SIZE
  assert f"TransformerConfig.vocab_size = {asr_lm_tasks.VOCAB_SIZE}" in GIN_FILE.read_text()
  sp = asr_lm_tasks.vocabulary().tokenizer
  for lang in corpus.LANGUAGES:
    line = corpus.split_lines(lang, "validation")[0]
    assert sp.decode(sp.encode(line)) == line


def test_mixing_rates_follow_the_temperature():
  n = np.array([len(corpus.split_lines(lang, "train")) for lang in corpus.LANGUAGES])
  for temperature in (1.0, 3.0, 1e9):
    rates = asr_lm_tasks.mixing_rates(temperature)
    expected = n ** (1 / temperature) / (n ** (1 / temperature)).sum()
    np.testing.assert_allclose(
        [rates[asr_lm_tasks.task_name(l)] for l in corpus.LANGUAGES], expected
    )
  mixture = seqio.get_mixture_or_task(asr_lm_tasks.MIXTURE_NAME)
  for name, rate in asr_lm_tasks.mixing_rates(asr_lm_tasks.DEFAULT_TEMPERATURE).items():
    assert mixture.get_rate(seqio.get_mixture_or_task(name)) / mixture.total_rate == pytest.approx(
        rate
    )
  with pytest.raises(ValueError, match="temperature must be > 0"):
    asr_lm_tasks.mixing_rates(0.0)


def _chisquare_pvalue(observed: np.ndarray, unique: np.ndarray, temperature: float) -> float:
  rates = asr_lm_tasks.mixing_rates(temperature)
  expected = np.array([rates[asr_lm_tasks.task_name(l)] for l in corpus.LANGUAGES]) * unique
  return stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue


@pytest.mark.parametrize(
    "name,temperature",
    [(asr_lm_tasks.MIXTURE_NAME, asr_lm_tasks.DEFAULT_TEMPERATURE), ("asr_lm_test_t0.25", 0.25)],
)
def test_mixture_samples_languages_at_the_temperature_rates(name, temperature):
  if name not in seqio.MixtureRegistry.names():
    asr_lm_tasks.register_mixture(name, temperature)
  ds = seqio.get_mixture_or_task(name).get_dataset(
      LENGTHS, split="train", shuffle=False, seed=1, num_epochs=None, copy_pretokenized=True
  )
  texts = [ex["targets_pretokenized"].decode() for ex in ds.take(3000).as_numpy_iterator()]
  # A line may exist in several languages: count only lines owned by one, and expect
  # language i at rate_i * (share of its lines that no other language has).
  owners = collections.defaultdict(set)
  for lang in corpus.LANGUAGES:
    for line in corpus.split_lines(lang, "train"):
      owners[line].add(lang)
  langs = list(corpus.LANGUAGES)
  observed = np.zeros(len(langs))
  for text in texts:
    if len(owners[text]) == 1:
      observed[langs.index(next(iter(owners[text])))] += 1
  unique = np.array(
      [np.mean([len(owners[line]) == 1 for line in corpus.split_lines(l, "train")]) for l in langs]
  )
  assert observed.sum() > 0.9 * len(texts)
  assert _chisquare_pvalue(observed, unique, temperature) > 1e-3
  if temperature < 1:  # languages differ enough in size here to show the test can fail
    assert _chisquare_pvalue(observed, unique, asr_lm_tasks.DEFAULT_TEMPERATURE) < 1e-6
