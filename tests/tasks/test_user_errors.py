"""A user's mistake in a task setting fails with a `UserError` (one line from the command
lines), never a plain ValueError (a bug, with its traceback)."""

import re
import pytest

from model_zoo.errors import ConfigError, MissingFileError, UserError
from tasks import pipeline, vocabularies
from tasks.asr_lm import catalogs
from tasks.parallel import corpus


def test_unknown_task_is_a_user_error():
  assert issubclass(pipeline.DataError, ConfigError)
  with pytest.raises(UserError, match="no SeqIO task or mixture named 'quickstrat'"):
    pipeline.get_task_or_mixture("quickstrat")
  with pytest.raises(UserError, match="could not import the task module"):
    pipeline.get_task_or_mixture("quickstart", module="no_such_module_here")


def test_bad_task_arguments_are_user_errors():
  with pytest.raises(ConfigError, match="languages"):
    corpus.check_language("xx")
  with pytest.raises(ConfigError, match="splits"):
    corpus.split_records("test")


def test_vocabulary_training_mistakes_are_user_errors(tmp_path):
  with pytest.raises(MissingFileError, match="does not exist"):
    vocabularies.train_sentencepiece([tmp_path / "missing.txt"], tmp_path / "spm", 64)
  text = tmp_path / "text.txt"
  text.write_text("hello world\nfoo bar baz\n")
  with pytest.raises(
      ConfigError, match=r"vocab_size=5000 is more pieces .* use at most (\d+)"
  ) as e:
    vocabularies.train_sentencepiece([text], tmp_path / "spm", 5000)
  most = int(re.search(r"at most (\d+)", str(e.value)).group(1))
  assert vocabularies.train_sentencepiece([text], tmp_path / "spm", most)  # the limit works
  with pytest.raises(ConfigError, match=f"at most {most} "):
    vocabularies.train_sentencepiece([text], tmp_path / "spm", most + 1)


def test_damaged_catalog_is_a_user_error(tmp_path):
  for content in (b"", b"\x00" * 40):
    path = tmp_path / "damaged.mo"
    path.write_bytes(content)
    with pytest.raises(UserError, match="gettext .mo file"):
      catalogs.read_mo(path)
