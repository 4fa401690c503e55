"""What the benchmark command lines (tools/benchmark_*.py) share.

Gin flag handling and model loading (core configurables only, so no TensorFlow or SeqIO),
peak memory, percentiles and the table + JSON output.
"""

import argparse
import datetime
import json
import os
import resource
import sys
import traceback
from typing import Any, Callable, Optional, Sequence

import gin
import jax
import numpy as np

from trainers import cli, gin_utils


def model_configurable(name: str) -> Callable[..., Any]:
  """A gin configurable `name` whose `model` parameter the tool binds to %MODEL.

  Call once per tool, at import time (gin registers each name once).
  """

  def configured_model(model=gin.REQUIRED):
    return model

  configured_model.__name__ = f"{name}_model"
  return gin.configurable(name)(configured_model)


def split_gin_overrides(parser: argparse.ArgumentParser, rest: Sequence[str]) -> list[str]:
  """Gin bindings "NAME = VALUE" from the --gin.NAME=VALUE arguments argparse left over.

  Anything else left over is an error (through `parser.error`, which exits).
  """
  bindings, unknown = [], []
  for arg in rest:
    name, eq, value = arg.partition("=")
    if name.startswith("--gin.") and eq:
      bindings.append(f"{name[len('--gin.'):]} = {value}")
    else:
      unknown.append(arg)
  if unknown:
    parser.error(
        f"unrecognized arguments: {' '.join(unknown)} (gin overrides are --gin.NAME=VALUE)"
    )
  return bindings


def load_model(
    gin_files: Sequence[str],
    gin_search_paths: str,
    bindings: Sequence[str],
    configurable: Callable[..., Any],
    configurable_name: str,
):
  """Parses the gin files and overrides; returns the model that the MODEL macro names.

  `configurable` comes from `model_configurable(configurable_name)`.
  """
  flags = gin_utils.Flags(
      gin_files=list(gin_files),
      gin_search_paths=[p for p in gin_search_paths.split(",") if p],
      gin_bindings=[f"{configurable_name}.model = %MODEL"] + list(bindings),
  )
  cli.import_configurables()  # the core's registry; no TensorFlow
  try:
    gin_utils.parse_gin(flags)
  except ValueError as e:
    if "'MODEL/gin.macro'" in str(e):
      raise gin_utils.FlagError(
          f"The gin files {list(gin_files)} define no MODEL macro; pass a model config such as "
          "--gin_file=gin/models/decoder_only_tiny.gin."
      ) from e
    raise
  return configurable()


def peak_memory() -> tuple[Optional[int], str]:
  """(bytes, label): device peak_bytes_in_use when reported, else the host's max RSS."""
  peaks = []
  for device in jax.local_devices():
    try:
      stats = device.memory_stats()
    except Exception:  # pylint: disable=broad-except  (backends without stats raise or return None)
      stats = None
    if stats and "peak_bytes_in_use" in stats:
      peaks.append(int(stats["peak_bytes_in_use"]))
  if peaks:
    return max(peaks), "device peak_bytes_in_use (max over local devices)"
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  rss *= 1 if sys.platform == "darwin" else 1024  # Linux reports KiB
  return int(rss), "host RSS (process max)"


def percentile(values: Sequence[float], q: float) -> float:
  """The q-th percentile (linear interpolation)."""
  return float(np.percentile(np.asarray(values, np.float64), q))


def version(package: str) -> Optional[str]:
  try:
    return __import__(package).__version__
  except (ImportError, AttributeError):
    return None


def json_default(x):
  if isinstance(x, (np.integer, np.floating)):
    return x.item()
  if isinstance(x, np.bool_):
    return bool(x)
  raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def emit(results: dict[str, Any], table: str, json_out: Optional[str]) -> None:
  """Prints the table; writes the JSON to `json_out`, or prints it when none is given."""
  print(table, flush=True)
  text = json.dumps(results, indent=2, default=json_default)
  if json_out:
    directory = os.path.dirname(os.path.abspath(json_out))
    os.makedirs(directory, exist_ok=True)
    with open(json_out, "w", encoding="utf-8") as f:
      f.write(text + "\n")
    print(f"wrote {json_out}", flush=True)
  else:
    print(text, flush=True)


def report_user_error(error: BaseException) -> int:
  """Prints a user error as one line (a traceback with PODZOO_DEBUG=1); the exit code."""
  if os.environ.get("PODZOO_DEBUG"):
    traceback.print_exc()
  print(f"ERROR: {error}", file=sys.stderr, flush=True)
  return 1


def run_info(
    gin_files: Sequence[str], bindings: Sequence[str], packages: Sequence[str]
) -> dict[str, Any]:
  """What a result needs to be reproduced: configs, overrides, package versions, time."""
  return {
      "gin_files": list(gin_files),
      "gin_overrides": [b.replace(" = ", "=", 1) for b in bindings],
      **{f"{p}_version": version(p) for p in packages},
      "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }
