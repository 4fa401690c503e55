"""Lines C++ libraries write to fd 2 are held back, and come back when they may explain a bug."""

import os

import pytest

from model_zoo import native_logs
from model_zoo.errors import ConfigError


def _write_then(exception=None):
  with native_logs.native_stderr_held():
    os.write(2, b"a line from C++\n")
    if exception is not None:
      raise exception


def test_held_lines_are_dropped_unless_a_bug_escapes(capfd, monkeypatch):
  monkeypatch.delenv(native_logs.VERBOSE_ENV, raising=False)
  _write_then()
  assert "a line from C++" not in capfd.readouterr().err
  with pytest.raises(KeyError):
    _write_then(KeyError("a bug"))
  assert "a line from C++" in capfd.readouterr().err  # replayed: it may explain the bug
  with pytest.raises(ConfigError):
    _write_then(ConfigError("a user's mistake, already explained"))
  assert "a line from C++" not in capfd.readouterr().err
  os.write(2, b"after the block\n")  # fd 2 is the terminal again
  assert "after the block" in capfd.readouterr().err


@pytest.mark.parametrize("value, shown", [("1", True), ("", False), ("0", False)])
def test_podzoo_verbose_shows_everything(capfd, monkeypatch, value, shown):
  monkeypatch.setenv(native_logs.VERBOSE_ENV, value)
  _write_then()
  assert ("a line from C++" in capfd.readouterr().err) == shown
