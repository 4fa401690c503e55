import json
import shutil

import pytest

from tools import build_asr_speech


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng)",
)
def test_builds_tiny_and_summarises_it(tmp_path, capsys):
  out = tmp_path / "summary.json"
  args = ["--config", "tiny", "--data_dir", str(tmp_path / "tfds"), "--json_out", str(out)]
  assert build_asr_speech.main(args) == 0
  printed = capsys.readouterr().out
  assert "split       lang utterances    hours   longest" in printed
  assert printed.count("\ntrain       en           12 ") == 1
  summary = json.loads(out.read_text())
  assert summary["config"] == "tiny" and summary["bytes"] > 0
  assert summary["tfds_name"].startswith("podzoo_asr_speech/tiny_")
  sizes = {"train": 12, "validation": 4, "test": 4, "test_rare": 4}
  for split, langs in summary["splits"].items():
    assert set(langs) == {"en", "de"}
    for row in langs.values():
      assert row["utterances"] == sizes[split]
      assert 0 < row["longest_seconds"] < 15 and 0 < row["hours"] * 3600 <= 15 * sizes[split]
  built = sorted(p.stat().st_mtime_ns for p in (tmp_path / "tfds").rglob("*.tfrecord*"))
  assert build_asr_speech.main(args) == 0  # again: reused, not rebuilt
  assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "tfds").rglob("*.tfrecord*")) == built


def test_missing_espeak_exits_2_with_the_install_command(tmp_path, monkeypatch, capsys):
  monkeypatch.setenv("PATH", str(tmp_path))  # a directory without espeak-ng
  assert build_asr_speech.main(["--config", "tiny", "--data_dir", str(tmp_path / "tfds")]) == 2
  err = capsys.readouterr().err
  assert "apt-get install espeak-ng" in err and "Traceback" not in err


def test_unknown_config_is_refused(capsys):
  assert build_asr_speech.main(["--config", "huge"]) == 1
  assert "no speech data config 'huge'" in capsys.readouterr().err
