"""Where a compiled program's time goes, by named scope, from a JAX profile.

XLA's runtime records one profiler event per executed op (thunk), named by its HLO
instruction; the compiled HLO text gives each instruction the op_name of the JAX code it came
from, which carries the `jax.named_scope`s around that code (forward and backward alike).
So the op time of a scope is the summed duration of the ops whose op_name contains it.
On a CPU the ops of one step can run on several threads at once: the sums are op time, to
be read as shares, not as wall time.
"""

import collections
import glob
import re
import tempfile
from typing import Callable, Sequence

import jax

_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = .*?op_name="([^"]*)"')
REST = "rest"  # ops under none of the scopes


def _module_name(hlo_text: str) -> str:
  return hlo_text.split(None, 2)[1].rstrip(",")


def _scope_of_instruction(hlo_text: str, scopes: Sequence[str]) -> dict[str, str]:
  """HLO instruction name -> the first of `scopes` its op_name mentions, else REST."""
  owners = {}
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if match:
      name, op_name = match.groups()
      parts = op_name.split("/")
      owners[name] = next((s for s in scopes if s in parts or f"{s})" in op_name), REST)
  return owners


def op_seconds_by_scope(
    run: Callable[[], None], hlo_text: str, scopes: Sequence[str]
) -> dict[str, float]:
  """Op seconds of the compiled module `hlo_text` per scope (and REST) while `run()` runs it."""
  owners = _scope_of_instruction(hlo_text, scopes)
  module = _module_name(hlo_text)
  with tempfile.TemporaryDirectory() as directory:
    with jax.profiler.trace(directory):
      run()
    (path,) = glob.glob(f"{directory}/**/*.xplane.pb", recursive=True)
    profile = jax.profiler.ProfileData.from_file(path)
  totals = collections.defaultdict(float)
  for plane in profile.planes:
    for line in plane.lines:
      for event in line.events:
        stats = dict(event.stats)
        if stats.get("hlo_module") == module and "hlo_op" in stats:
          totals[owners.get(stats["hlo_op"], REST)] += event.duration_ns * 1e-9
  return {scope: totals.get(scope, 0.0) for scope in (*scopes, REST)}
