"""T5X-style command lines: --gin_file (repeatable), --gin_search_paths, --gin.NAME=VALUE.

Bad input fails fast and names itself: a missing gin file, an unknown configurable or
parameter (with close matches), and a macro override that no config uses (gin would
otherwise silently define a new, unused macro, e.g. a mistyped --gin.TRAIN_STPES=10).
"""

import dataclasses
import difflib
import inspect
import logging
import os
import re
import tokenize
from typing import Optional, Sequence

import gin

from model_zoo.errors import ConfigError
from trainers import gin_include_order

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FlagError(ConfigError):
  """A command-line or gin configuration error, phrased for the user."""


@dataclasses.dataclass
class Flags:
  gin_files: list[str] = dataclasses.field(default_factory=list)
  gin_search_paths: list[str] = dataclasses.field(default_factory=list)
  gin_bindings: list[str] = dataclasses.field(default_factory=list)
  multihost: bool = False
  coordinator_address: Optional[str] = None
  num_processes: Optional[int] = None
  process_id: Optional[int] = None
  help: bool = False
  verbose: bool = False


_VALUE_FLAGS = {
    "--gin_file": "gin_files",
    "--gin_search_paths": "gin_search_paths",
    "--coordinator_address": "coordinator_address",
    "--num_processes": "num_processes",
    "--process_id": "process_id",
}
_USAGE = (
    "usage: python -m trainers.{prog} --gin_file=FILE [--gin_file=...] "
    "[--gin_search_paths=DIR,DIR] [--gin.NAME=VALUE ...] [--verbose] [--multihost] "
    "[--coordinator_address=HOST:PORT --num_processes=N --process_id=I]"
)


def parse_flags(argv: Sequence[str], prog: str = "train") -> Flags:
  """Parses our flags; anything unknown is an error naming the flag."""
  flags = Flags()
  args = list(argv)
  while args:
    arg = args.pop(0)
    name, eq, value = arg.partition("=")
    if name.startswith("--gin."):
      if not eq:
        raise FlagError(f"{arg}: a gin override needs a value, e.g. --gin.TRAIN_STEPS=100.")
      flags.gin_bindings.append(f"{name[len('--gin.'):]} = {value}")
    elif name == "--multihost":
      flags.multihost = True
    elif name == "--verbose":
      flags.verbose = True
    elif name in _VALUE_FLAGS:
      if not eq:
        if not args:
          raise FlagError(f"{name} needs a value.\n{_USAGE.format(prog=prog)}")
        value = args.pop(0)
      attr = _VALUE_FLAGS[name]
      if attr == "gin_files":
        flags.gin_files.append(value)
      elif attr == "gin_search_paths":
        flags.gin_search_paths.extend(p for p in value.split(",") if p)
      elif attr in ("num_processes", "process_id"):
        if not value.isdigit():
          raise FlagError(f"{name}={value}: expected a whole number >= 0, e.g. {name}=2.")
        setattr(flags, attr, int(value))
      else:
        setattr(flags, attr, value)
    elif name in ("-h", "--help"):
      flags.help = True
      return flags
    else:
      raise FlagError(f"Unknown flag {arg!r}.\n{_USAGE.format(prog=prog)}")
  if not flags.gin_files:
    raise FlagError(
        f"No --gin_file given; pass a run config, e.g. "
        f"--gin_file=gin/runs/quickstart.gin.\n{_USAGE.format(prog=prog)}"
    )
  return flags


# What each entry point's run config must set, and the gin file that adds it to a model's.
_RUN_CONFIGS = {
    "train": (
        "gin/runs/pretrain.gin (or gin/runs/quickstart.gin, which includes a model)",
        "MODEL_DIR, TRAIN_STEPS, BATCH_SIZE, MIXTURE_OR_TASK_NAME, TASK_FEATURE_LENGTHS; "
        "optional: MIXTURE_OR_TASK_MODULE, EVAL_PERIOD, EVAL_STEPS, CHECKPOINT_PERIOD, "
        "KEEP_CHECKPOINTS, LEARNING_RATE_SCHEDULE",
    ),
    "eval": (
        "the run's own config (e.g. gin/runs/quickstart.gin) plus gin/runs/eval.gin",
        "MODEL_DIR (holding the checkpoints), and the run's MIXTURE_OR_TASK_NAME, "
        "TASK_FEATURE_LENGTHS, BATCH_SIZE; optional: EVAL_STEPS",
    ),
    "cache_tasks": (
        "the run's own config (e.g. gin/runs/quickstart.gin), as for training",
        "DatasetConfig.cache_dir (where to write), and the run's MIXTURE_OR_TASK_NAME, "
        "MIXTURE_OR_TASK_MODULE; optional: cache_tasks.pipeline_options (the Beam runner), "
        "cache_tasks.min_shards, cache_tasks.overwrite, cache_tasks.tasks_per_job",
    ),
    "serve": (
        "gin/runs/serve.gin",
        "SERVED_MODELS ({name: MODEL_DIR of a finished run}); optional: serve.placement "
        "('1x2:a,b 2x1:a': STAGESxTENSOR groups and their models), serve.host, serve.port, "
        "serve.slo_s, serve.profile_file, serve.max_batch, serve.max_queue",
    ),
    "infer": (
        "the run's own config (e.g. gin/runs/quickstart.gin) plus gin/runs/infer.gin",
        "MODEL_DIR (holding the checkpoints), and the run's MIXTURE_OR_TASK_NAME, "
        "TASK_FEATURE_LENGTHS; then infer.input_file, infer.mode (predict | score | "
        "predict_with_aux), infer.decoder",
    ),
}


def help_text(prog: str) -> str:
  """--help: the usage, the macros a run config sets, and where the gin files are."""
  files, macros = _RUN_CONFIGS[prog]
  gin_dir = os.path.join(REPO_ROOT, "gin")
  listing = "\n".join(
      f"  gin/{kind}/: " + ", ".join(sorted(os.listdir(os.path.join(gin_dir, kind))))
      for kind in sorted(os.listdir(gin_dir))
      if os.path.isdir(os.path.join(gin_dir, kind))
  )
  return (
      f"{_USAGE.format(prog=prog)}\n\n"
      f"Run config: {files}.\n"
      f"Macros it sets (override with --gin.NAME=VALUE): {macros}.\n"
      "Strings need inner quotes: --gin.MODEL_DIR=\"'/tmp/run'\".\n\n"
      f"Gin files (found relative to the working directory, --gin_search_paths and {REPO_ROOT}):\n"
      f"{listing}"
  )


def _resolve_file(path: str, search_paths: Sequence[str]) -> str:
  for root in ("",) + tuple(search_paths):
    candidate = os.path.join(root, path)
    if os.path.isfile(candidate):
      return candidate
  raise FlagError(
      f"--gin_file={path}: file not found (searched the working directory and "
      f"--gin_search_paths {list(search_paths)})."
  )


def _registered_names() -> list[str]:
  names = set()
  for selector in gin.config._REGISTRY._selector_map:  # gin has no public listing
    names.add(selector)
    names.add(selector.rsplit(".", 1)[-1])
  return sorted(names)


def _did_you_mean(name: str, candidates: Sequence[str]) -> str:
  close = difflib.get_close_matches(name, candidates, n=5)
  return f" Did you mean: {', '.join(close)}?" if close else ""


def _parameter_names(configurable_name: str) -> list[str]:
  """The parameters gin may bind on `configurable_name` (empty when it is unknown)."""
  configurable = gin.config._REGISTRY.get_match(configurable_name)
  if configurable is None:
    return []
  wrapped = configurable.wrapped
  fn = wrapped.__init__ if inspect.isclass(wrapped) else wrapped
  try:
    parameters = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return []
  return [n for n in parameters if n != "self"]


def _explain(error: Exception) -> str:
  """gin's message, led by what to change: close matches, the file and line, quoting."""
  if isinstance(error, SyntaxError):
    return _explain_syntax(error)
  if isinstance(error, tokenize.TokenError):
    return f"unbalanced brackets or an unterminated string ({error.args[0]})."
  message = str(error)
  unknown = re.search(r"No configurable matching '([^']+)'", message)
  if unknown:
    hint = _did_you_mean(unknown.group(1), _registered_names())
    return f"Unknown gin configurable '{unknown.group(1)}'.{hint}\n{message}"
  parameter = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", message)
  if parameter:
    hint = _did_you_mean(parameter.group(2), _parameter_names(parameter.group(1)))
    return f"{message.splitlines()[0]}{hint}"
  return message


# A value gin cannot parse that looks like a bare string: a path, a name, a word.
_BARE_STRING = re.compile(r"^[\w./~:-]+$")


def _explain_syntax(error: SyntaxError) -> str:
  text = (error.text or "").strip()
  name, _, value = (part.strip() for part in text.partition("="))
  if value and _BARE_STRING.match(value) and not value[0].isdigit():
    if error.filename:
      fix = f"write {name} = '{value}'"
    else:  # a command-line override: the shell eats one pair of quotes
      fix = f"write --gin.{name}=\"'{value}'\" (inner quotes for gin, outer for the shell)"
    reason = f"{value} is not a gin value; strings need quotes: {fix}."
  else:
    reason = error.msg.split(" (line ")[0].splitlines()[0].rstrip(".") + "."
  return f"{error.filename}, line {error.lineno}: {text}\n  {reason}" if error.filename else reason


_UNSET_REQUIRED = re.compile(r"^(\S+) set to `%gin.REQUIRED` but not subsequently overridden")


def parse_gin(flags: Flags) -> None:
  """Parses the gin files then the overrides; raises FlagError naming any bad binding."""
  search_paths = list(dict.fromkeys(list(flags.gin_search_paths) + [os.getcwd(), REPO_ROOT]))
  for path in search_paths:
    gin.add_config_file_search_path(path)
  files = [_resolve_file(f, search_paths) for f in flags.gin_files]
  try:
    gin.parse_config_files_and_bindings(files, None, finalize_config=False)
  except (ValueError, IOError, SyntaxError, tokenize.TokenError) as e:
    raise FlagError(_explain(e)) from e
  for warning in gin_include_order.include_rebindings(flags.gin_files, search_paths):
    logging.warning(warning)
  for binding in flags.gin_bindings:
    try:
      gin.parse_config(binding)
    except (ValueError, SyntaxError, tokenize.TokenError) as e:
      raise FlagError(f"Bad override --gin.{binding.replace(' = ', '=')}: {_explain(e)}") from e
  _check_macro_overrides(flags.gin_bindings)
  try:
    gin.finalize()
  except ValueError as e:
    missing = _UNSET_REQUIRED.match(str(e))
    if not missing:
      raise
    name = missing.group(1).removesuffix("/macro.value")
    raise FlagError(
        f"{name} is required (a gin file sets it to %gin.REQUIRED) and nothing gives it a "
        f"value; pass --gin.{name}=... or a gin file that sets it"
    ) from None


def _check_macro_overrides(bindings: Sequence[str]) -> None:
  used = {
      ref.config_key[0]
      for ref in gin.config.iterate_references(gin.config._CONFIG)
      if ref.config_key[1] == "gin.macro"
  }
  defined = {key[0] for key in gin.config._CONFIG if key[1] == "gin.macro"}
  for binding in bindings:
    name = binding.split("=", 1)[0].strip()
    if "." in name or "/" in name or name in used:
      continue
    close = difflib.get_close_matches(name, sorted((used | defined) - {name}), n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise FlagError(f"--gin.{name}: no config uses a macro or binding named '{name}'.{hint}")


def write_operative_config(model_dir: str, step: int = 0) -> str:
  """Writes MODEL_DIR/config.gin atomically, keeping an earlier, different one; returns its path.

  Called once a run is accepted (restored or initialised, with steps to train) at `step`,
  the step it starts from. A config.gin already there is the config of the run segment
  that ended at `step`: when it differs from this run's, it is kept as
  MODEL_DIR/config-<step>.gin (config-<step>-2.gin, -3, ... if that name is taken, e.g.
  by a segment that ended without a checkpoint), so MODEL_DIR holds the config of every
  segment: config-<s>.gin was in force up to step s, config.gin since the newest segment
  began. An identical config.gin is left as it is.
  """
  path = os.path.join(model_dir, "config.gin")
  text = gin.config_str()
  try:
    with open(path, encoding="utf-8") as f:
      old = f.read()
  except FileNotFoundError:
    old = None
  if old == text:
    return path
  writes = [(path, text)] if old is None else [(_history_path(model_dir, step), old), (path, text)]
  for target, content in writes:  # the old config is kept before it is replaced
    tmp = target + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(content)
    os.replace(tmp, target)
  return path


def _history_path(model_dir: str, step: int) -> str:
  """MODEL_DIR/config-<step>.gin, or the first free config-<step>-<n>.gin (n = 2, 3, ...)."""
  path, n = os.path.join(model_dir, f"config-{step}.gin"), 1
  while os.path.exists(path):
    n += 1
    path = os.path.join(model_dir, f"config-{step}-{n}.gin")
  return path
