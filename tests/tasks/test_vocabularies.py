import os

import pytest

from tasks import quickstart, vocabularies
from tools import train_vocabulary

CORPUS = str(quickstart.CORPUS_PATH)
VERSE = "And God called the light Day, and the darkness he called Night."


def test_trains_t5_ids_and_round_trips(tmp_path):
  path = vocabularies.train_sentencepiece([CORPUS], tmp_path / "spm", 512)
  assert path == str(tmp_path / "spm.model") and os.path.exists(tmp_path / "spm.vocab")
  vocab = vocabularies.seqio.SentencePieceVocabulary(path)
  assert vocab.vocab_size == 512
  sp = vocab.tokenizer
  assert [sp.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
  assert (vocab.pad_id, vocab.eos_id, vocab.unk_id, sp.bos_id()) == (0, 1, 2, -1)
  ids = vocab.encode(VERSE)
  assert vocab.eos_id not in ids and vocab.pad_id not in ids
  assert vocab.decode(ids) == VERSE
  # byte fallback: characters absent from the corpus survive as bytes instead of UNK
  assert vocab.decode(vocab.encode("naïve ∑")) == "naïve ∑"


def test_training_is_deterministic(tmp_path):
  a = vocabularies.train_sentencepiece([CORPUS], tmp_path / "a" / "spm", 512)
  b = vocabularies.train_sentencepiece([CORPUS], tmp_path / "b" / "other", 512)
  with open(a, "rb") as fa, open(b, "rb") as fb:
    assert fa.read() == fb.read()


def test_user_defined_symbols_stay_whole(tmp_path):
  path = vocabularies.train_sentencepiece(
      [CORPUS], tmp_path / "spm", 512, user_defined_symbols=("<sep>",)
  )
  vocab = vocabularies.seqio.SentencePieceVocabulary(path)
  sep = vocab.tokenizer.piece_to_id("<sep>")
  assert sep > 2 and sep in vocab.encode("light<sep>darkness")


def test_cache_trains_once_and_keys_on_content(tmp_cache, tmp_path, monkeypatch, capsys):
  text = tmp_path / "text.txt"
  text.write_text("\n".join(quickstart.split_lines("train")[:400]) + "\n")
  first = vocabularies.cached_sentencepiece_vocabulary([text], 400)
  path = first.sentencepiece_model_file
  assert path.startswith(str(tmp_cache / "vocab"))
  said = capsys.readouterr().out  # the user is told why the first run pauses
  assert "Training a 400-piece sentencepiece vocabulary on first use" in said and path in said
  mtime = os.stat(path).st_mtime_ns

  def no_training(*args, **kwargs):
    raise AssertionError("retrained although the model is cached")

  with monkeypatch.context() as patch:
    patch.setattr(vocabularies, "train_sentencepiece", no_training)
    again = vocabularies.cached_sentencepiece_vocabulary([text], 400)
  assert again.sentencepiece_model_file == path and os.stat(path).st_mtime_ns == mtime
  assert "Training" not in capsys.readouterr().out

  text.write_text(text.read_text() + "And Adam knew Eve his wife.\n")
  changed = vocabularies.cached_sentencepiece_vocabulary([text], 400)
  assert changed.sentencepiece_model_file != path
  assert changed.sentencepiece_model_file.startswith(str(tmp_cache / "vocab"))


def test_cli(tmp_path, capsys):
  path = train_vocabulary.main(
      [
          "--input",
          CORPUS,
          "--input",
          CORPUS,
          "--model_prefix",
          str(tmp_path / "cli"),
          "--vocab_size",
          "400",
          "--user_defined_symbols",
          "<a>,<b>",
      ]
  )
  assert capsys.readouterr().out.strip() == path == str(tmp_path / "cli.model")
  sp = vocabularies.seqio.SentencePieceVocabulary(path).tokenizer
  assert sp.get_piece_size() == 400
  assert all(sp.piece_to_id(s) not in (sp.unk_id(), None) for s in ("<a>", "<b>"))
