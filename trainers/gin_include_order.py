"""Warns when a later --gin_file silently replaces an earlier one's bindings through an include.

`--gin_file=gin/models/decoder_only_small.gin --gin_file=gin/runs/quickstart.gin` trains
the tiny model: the quickstart includes `decoder_only_tiny.gin`, whose bindings come after
the small model's and win. A later file's own lines are a deliberate override (T5X's way);
what it brings in by `include` is not, so only those rebindings, to other values, are named.
"""

import os
from typing import Iterator, NamedTuple, Sequence

from gin import config_parser


class _Binding(NamedTuple):
  key: str  # "scope/selector.arg" or a macro name
  value: str
  source: str  # the file whose line binds it


class _TextDelegate(config_parser.ParserDelegate):
  """References and macros as their text, so two bindings compare by what they say."""

  def configurable_reference(self, scoped_configurable_name, evaluate):
    return f"@{scoped_configurable_name}{'()' if evaluate else ''}"

  def macro(self, macro_name):
    return f"%{macro_name}"


def _resolve(path: str, search_paths: Sequence[str]) -> str:
  for root in ("",) + tuple(search_paths):
    if os.path.isfile(os.path.join(root, path)):
      return os.path.join(root, path)
  return path


def _bindings(
    path: str, search_paths: Sequence[str], seen: frozenset = frozenset()
) -> Iterator[_Binding]:
  """Every binding of `path` and of what it includes, in gin's order."""
  if path in seen:
    return
  with open(path, encoding="utf-8") as f:
    for statement in config_parser.ConfigParser(f, _TextDelegate()):
      if isinstance(statement, config_parser.IncludeStatement):
        included = _resolve(statement.filename, search_paths)
        yield from _bindings(included, search_paths, seen | {path})
      elif isinstance(statement, config_parser.BindingStatement):
        scope = f"{statement.scope}/" if statement.scope else ""
        name = (
            f"{statement.selector}.{statement.arg_name}"
            if statement.arg_name
            else statement.selector
        )
        yield _Binding(scope + name, repr(statement.value), path)


def include_rebindings(gin_files: Sequence[str], search_paths: Sequence[str]) -> list[str]:
  """One warning per --gin_file whose includes rebind, to other values, an earlier file's bindings."""
  warnings, earlier = [], {}  # key -> (value, the --gin_file that bound it)
  for top in gin_files:
    path = _resolve(top, search_paths)
    mine = list(_bindings(path, search_paths))
    replaced = {}  # the earlier --gin_file -> [(key, the included file)]
    for binding in mine:
      old = earlier.get(binding.key)
      if old and binding.source != path and binding.value != old[0]:
        replaced.setdefault(old[1], []).append((binding.key, binding.source))
    for old_file, rebound in replaced.items():
      includes = sorted({os.path.relpath(source) for _, source in rebound})
      keys = sorted({key for key, _ in rebound})
      shown = ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
      warnings.append(
          f"--gin_file={top} includes {', '.join(includes)}, which rebinds {len(keys)} "
          f"setting(s) that the earlier --gin_file={old_file} bound ({shown}); the later "
          f"file wins. Pass --gin_file={old_file} after --gin_file={top} to keep its settings."
      )
    earlier.update({b.key: (b.value, top) for b in mine})
  return warnings
