"""tools/vocab_coverage: the per-language figures recomputed from the task vocabulary here."""

import json

import pytest

from tasks.parallel import corpus, vocabulary
from tools import vocab_coverage


def test_coverage_of_the_task_vocabulary_is_recomputed(tmp_path, capsys):
  out = tmp_path / "coverage.json"
  size = str(vocabulary.VOCAB_SIZE)
  assert vocab_coverage.main(["--vocab_sizes", size, "--json_out", str(out)]) == 0
  results = json.loads(out.read_text())
  assert results["character_coverage"] == vocabulary.CHARACTER_COVERAGE
  coverage = results["coverage"][size]
  assert list(coverage) == list(corpus.LANGUAGES)
  sp = vocabulary.parallel_vocabulary().tokenizer
  for lang in ("de", "zh_CN", "ko"):
    texts = corpus.monolingual(lang, "validation")
    ids = [i for text in texts for i in sp.encode(text)]
    chars = sum(map(len, texts))
    assert coverage[lang]["chars"] == chars
    assert coverage[lang]["tokens_per_char"] == pytest.approx(len(ids) / chars)
    assert coverage[lang]["byte_share"] == pytest.approx(sum(map(sp.is_byte, ids)) / len(ids))
  # No script is mostly bytes; the CJK ones, the most, stay under a few percent.
  assert max(c["byte_share"] for c in coverage.values()) < 0.05
  assert f"tok/ch@{size}" in capsys.readouterr().out


def test_bad_sizes_are_refused(capsys):
  assert vocab_coverage.main(["--vocab_sizes", "big"]) == 1
  assert "--vocab_sizes must be comma-separated integers" in capsys.readouterr().err
