"""Runs Python code in a fresh interpreter where TensorFlow and SeqIO cannot be imported.

GPU machines have JAX but no TensorFlow/SeqIO, so the benchmark tools must work there.
"""

import os
import subprocess
import sys
import textwrap

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BLOCK = """
import importlib.abc, sys
BLOCKED = ("tensorflow", "seqio", "tensorflow_text", "tensorflow_datasets")
class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in BLOCKED:
      raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
"""
_CHECK = """
assert not any(m.split(".")[0] in BLOCKED for m in sys.modules)
print("ok")
"""


def assert_runs_without_tensorflow(code: str) -> None:
  """Runs `code` with the imports blocked; fails if it raises or anything imported them."""
  script = _BLOCK + textwrap.dedent(code) + _CHECK
  result = subprocess.run(
      [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip().endswith("ok")
