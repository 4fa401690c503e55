"""The one base class of podzoo's user errors.

A `UserError` is a mistake in what a user gave (a flag, a gin binding, a task, a file): the
command lines print its message alone, in one line, and exit 1. Any other exception is a
bug and keeps its traceback. The subclasses also derive from the matching built-in error,
so `except ValueError` still catches a bad value.
"""


class UserError(Exception):
  """Something the user gave is wrong; the message says what, and which setting fixes it."""


class ConfigError(UserError, ValueError):
  """A bad value of a setting (gin binding, flag, argument); the message names the setting."""


class MissingFileError(UserError, FileNotFoundError):
  """A file or directory the user named (or a run needs) does not exist."""
