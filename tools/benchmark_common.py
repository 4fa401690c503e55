"""What the benchmark command lines (tools/benchmark_*.py) share.

The main() skeleton (`run_main`), gin flag handling and model loading (core configurables
only, so no TensorFlow or SeqIO), peak memory, percentiles and the table + JSON output.
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

from model_zoo.errors import UserError
from flax.core import meta

from trainers import checkpoints, cli, distributed, gin_utils
from trainers.initial_checkpoint import InitialCheckpoint

Results = dict[str, Any]


def model_configurable(name: str) -> Callable[..., Any]:
  """A gin configurable `name` whose `model` parameter the tool binds to %MODEL.

  Call once per tool, at import time (gin registers each name once).
  """

  def configured_model(model=gin.REQUIRED):
    return model

  configured_model.__name__ = f"{name}_model"
  return gin.configurable(name)(configured_model)


def new_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
  """A benchmark tool's parser with its first flags: --gin_file and --gin_search_paths."""
  parser = argparse.ArgumentParser(
      prog=prog, allow_abbrev=False, description=description, epilog=epilog
  )
  parser.add_argument(
      "--gin_file",
      action="append",
      default=[],
      required=True,
      help="model config (repeatable), e.g. gin/models/decoder_only_tiny.gin",
  )
  parser.add_argument("--gin_search_paths", default="", help="comma-separated directories")
  return parser


def add_multihost_arguments(parser: argparse.ArgumentParser) -> None:
  """--multihost, --coordinator_address, --num_processes, --process_id (see trainers.distributed).

  `run_main` joins the multi-host run they describe before it loads the model.
  """
  parser.add_argument("--multihost", action="store_true")
  parser.add_argument("--coordinator_address", default=None)
  parser.add_argument("--num_processes", type=int, default=None)
  parser.add_argument("--process_id", type=int, default=None)


def parse_known_args(
    parser: argparse.ArgumentParser, argv: Sequence[str]
) -> tuple[argparse.Namespace, list[str]]:
  """(the tool's flags, gin bindings "NAME = VALUE" of the --gin.NAME=VALUE arguments)."""
  args, rest = parser.parse_known_args(list(argv))
  return args, split_gin_overrides(parser, rest)


def run_main(
    argv: Optional[Sequence[str]],
    parse_args: Callable[[Sequence[str]], tuple[argparse.Namespace, list[str]]],
    load_model: Callable[[argparse.Namespace, list[str]], Any],
    run: Callable[[argparse.Namespace, Any], Results],
    format_table: Callable[[Results], str],
    *,
    packages: Sequence[str],
    exit_code: Callable[[Results], int] = lambda results: 0,
) -> int:
  """The main() of a benchmark tool; returns its exit code.

  `parse_args(argv)` gives (flags, gin bindings) and exits through `parser.error` on a bad
  flag (the flags must include --gin_file and --json_out); then, inside one `except
  UserError` that prints the message in one line (exit 1): joins the multi-host run when
  the parser has `add_multihost_arguments`' flags, `load_model(flags, bindings)`, and
  `run(flags, model)` gives the results. The results, after `run_info` (the gin files,
  overrides and versions of `packages`), are printed as `format_table(results)` plus the
  JSON (or written to --json_out) by process 0 alone, and `exit_code(results)` is returned.
  """
  args, bindings = parse_args(sys.argv[1:] if argv is None else argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  gin.clear_config()  # main() may run more than once in a process (tests, notebooks)
  try:
    if hasattr(args, "multihost"):
      distributed.initialize(
          args.multihost, args.coordinator_address, args.num_processes, args.process_id
      )
    results = run(args, load_model(args, bindings))
  except UserError as e:
    return report_user_error(e)
  results = {**run_info(args.gin_file, bindings, packages), **results}
  if jax.process_index() != 0:
    return 0
  emit(results, format_table(results), args.json_out)
  return exit_code(results)


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
  gin.clear_config()  # as cli.run does: a process may load a model more than once
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


def newest_params(model, model_dir: str, batch: Optional[dict] = None):
  """The model's parameters from MODEL_DIR's newest checkpoint, on one device: no optimizer
  state, no mesh and no run config needed (a teacher's parameters are not read). `batch`: one
  the model initialises from (default: a token model's)."""
  if batch is None:
    tokens = np.zeros((1, 8), np.int32)
    batch = {"decoder_input_tokens": tokens, "decoder_target_tokens": tokens}
  shapes = jax.eval_shape(lambda: meta.unbox(model.init(jax.random.PRNGKey(0), batch)))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)
  state_dir = InitialCheckpoint(model_dir).state_dir()
  return checkpoints.read_params(state_dir, target)


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


def require_positive(
    parser: argparse.ArgumentParser, args: argparse.Namespace, names: Sequence[str]
) -> None:
  """Exit through `parser.error` (usage + message, status 2) on any count flag below 1."""
  for name in names:
    if getattr(args, name) < 1:
      parser.error(f"--{name}={getattr(args, name)} must be >= 1")


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


def finish_experiment(
    run_fn: Callable[[Any], dict[str, Any]],
    args: Any,
    plot_fn: Callable[[dict[str, Any], str], None],
    table_fn: Callable[[dict[str, Any]], str],
) -> int:
  """An experiment's end: runs it on `args`, then writes its plot (args.plot), prints its
  table and writes its JSON (args.json_out); a user's mistake exits 1 with one line."""
  try:
    results = run_fn(args)
  except UserError as e:
    return report_user_error(e)
  plot_fn(results, args.plot)
  emit(results, table_fn(results), args.json_out)
  print(f"Wrote {args.json_out} and {args.plot}.")
  return 0


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
