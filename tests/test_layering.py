"""Imports point down only (tools -> trainers -> model_zoo; trainers/data.py alone reaches
tasks/), and the core imports without TensorFlow or SeqIO.

Every import statement is read from the source, at module level or inside a function, so
a lazy import breaks the layering as surely as a top-level one.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("model_zoo", "trainers", "tasks", "tools")
# package -> the packages of ours it must never import
FORBIDDEN = {
    "model_zoo": {"trainers", "tasks", "tools"},
    "tasks": {"trainers", "tools"},
    "trainers": {"tools"},
}
DATA_SEAM = "trainers/data.py"  # the one trainer module that imports tasks/


def imported_packages(path: pathlib.Path) -> dict[str, int]:
  """Our top-level packages that `path` imports, each with the line of its first import."""
  found = {}
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names = [node.module]
    else:
      continue
    for name in names:
      top = name.split(".")[0]
      if top in PACKAGES:
        found.setdefault(top, node.lineno)
  return found


def layering_violations(root: pathlib.Path) -> list[str]:
  violations = []
  for package in PACKAGES:
    for path in sorted((root / package).rglob("*.py")):
      relative = path.relative_to(root).as_posix()
      imported = imported_packages(path)
      forbidden = set(FORBIDDEN.get(package, ()))
      if package == "trainers" and relative != DATA_SEAM:
        forbidden.add("tasks")
      violations += [
          f"{relative}:{line} imports {target}/"
          for target, line in sorted(imported.items())
          if target in forbidden
      ]
  return violations


def test_imports_point_down_only():
  assert layering_violations(ROOT) == []


def test_the_check_catches_an_upward_import(tmp_path):
  """A model module that imports the trainers, or a trainer that reaches tasks/ around the
  data seam (even lazily), is reported."""
  for package in PACKAGES:
    (tmp_path / package).mkdir()
  (tmp_path / "model_zoo" / "bad.py").write_text("from trainers.decoding import base\n")
  (tmp_path / "trainers" / "infer.py").write_text("def f():\n  from tasks import pipeline\n")
  (tmp_path / "trainers" / "data.py").write_text("from tasks import pipeline\n")
  (tmp_path / "tasks" / "x.py").write_text("import trainers.infer\n")
  assert layering_violations(tmp_path) == [
      "model_zoo/bad.py:1 imports trainers/",
      "trainers/infer.py:2 imports tasks/",
      "tasks/x.py:1 imports trainers/",
  ]


@pytest.mark.parametrize(
    "modules",
    [
        "model_zoo.models, model_zoo.dense, model_zoo.decoding.beam_search, "
        "model_zoo.decoding.fusion",
        "trainers.train, trainers.eval, trainers.infer, trainers.trainer, trainers.checkpoints",
    ],
)
def test_the_core_imports_without_tensorflow_or_seqio(modules):
  code = (
      f"import sys; import {modules}; "
      "print(sorted(m for m in ('tensorflow', 'seqio') if m in sys.modules))"
  )
  out = subprocess.run(
      [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
  ).stdout
  assert out.strip().splitlines()[-1] == "[]"
