import json
import pathlib

import pytest

from tasks import cache
from tools import prepare_data


@pytest.mark.slow
def test_builds_into_the_cache_and_reuses_it(tmp_path, monkeypatch):
  monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
  out = tmp_path / "prepared.json"
  args = ["--only", "quickstart_vocab,parallel_tfds", "--json_out", str(out)]
  assert prepare_data.main(args) == 0
  first = json.loads(out.read_text())["steps"]
  assert set(first) == {"quickstart_vocab", "parallel_tfds"}
  for step in first.values():
    path = pathlib.Path(step["path"])
    assert path.exists() and path.is_relative_to(tmp_path / "cache")
    assert step["bytes"] == prepare_data._size(step["path"]) > 0
  assert (pathlib.Path(first["parallel_tfds"]["path"]) / "1.0.0").is_dir()
  modified = pathlib.Path(first["quickstart_vocab"]["path"]).stat().st_mtime_ns
  assert prepare_data.main(args) == 0  # again: the same files, not rebuilt
  second = json.loads(out.read_text())["steps"]
  assert {k: v["path"] for k, v in second.items()} == {k: v["path"] for k, v in first.items()}
  assert pathlib.Path(second["quickstart_vocab"]["path"]).stat().st_mtime_ns == modified


def test_unknown_step_is_refused(capsys):
  assert prepare_data.main(["--only", "parallel_tfds,vocab"]) == 1
  assert "unknown steps ['vocab']" in capsys.readouterr().err
