"""Brainformer block search: regularised evolution (Real et al. 2019) over blocks of attention,
FFN and MoE sub-layers (model_zoo/layer_spec.py) under a step-time constraint (Zhou et al. 2023).

  python -m tools.block_search --out_dir DIR [--candidates 24] [--population 8] [--sample 3] \
      [--steps 100] [--batch_size 16] [--eval_steps 10] [--seed 0] [--tolerance 0.1] \
      [--reference JSON] [--routers expert_choice top_k]

Each block is trained by the real command line (`python -m trainers.train`, a process of its
own, MODEL_DIR DIR/runs/<the block's hash>) as the one-block tiny Brainformer
(gin/models/brainformer_tiny.gin, gin/runs/pretrain.gin, gin/runs/short_run.gin,
gin/mixtures/asr_lm.gin with TransformerConfig.block bound to it) for --steps steps. Its score
is the final eval cross entropy (--eval_steps validation batches; the eval loss less its z-loss
regulariser, so the LM's quality alone, as the paper's perplexity); its cost the median
step_time_s of train_metrics.jsonl, leaving out the first of its 5 log periods (the compilation).
The reference block (--reference, a JSON list; default GLAM_BLOCK, GLaM's layers) is trained
first: a candidate is feasible when its step takes at most (1 + --tolerance) times the
reference's (the paper's constraint: no slower than the baseline), and an infeasible one ranks
below every feasible one. A candidate whose training fails is logged with its error, infeasible.
Expert choice (a --routers choice) ranks a sequence's tokens, so a token's routing sees the
tokens after it (model_zoo/brainformer.py, SpecBlock): its eval loss is not a causal LM's alone;
--routers top_k keeps the comparison causal.

The first --population candidates are random blocks; each later one mutates the best of
--sample members drawn from the population, which then drops its oldest member. Each result
is appended to DIR/candidates.jsonl at once. A proposal depends only on the seed, its index and
the results before it, so running the command again with the same DIR replays the log and
trains only the candidates it lacks (a larger --candidates extends the search). Prints the best
10 candidates beside the reference and writes DIR/search.json.
"""

import argparse
import collections
import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import sys
from typing import Any, Callable, Optional, Sequence

from model_zoo import layer_spec
from model_zoo.errors import ConfigError, UserError
from model_zoo.moe.config import ROUTERS
from tools import benchmark_common, moe_experiment, run_logs

Block = list[dict[str, Any]]
Objective = Callable[[Block], dict[str, Any]]

GIN_FILES = ("gin/models/brainformer_tiny.gin", *moe_experiment.GIN_FILES[1:])
LOG_ROWS = 5  # train_metrics.jsonl rows per run: the compiling one, then the timed ones
TABLE_ROWS = 10
# The settings each sub-layer kind takes, and so what a mutation may change.
SETTING_KINDS = {
    "mlp_dim": (layer_spec.FFN, layer_spec.MOE),
    "router": (layer_spec.MOE,),
    "capacity_factor": (layer_spec.MOE,),
}


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """The blocks the search proposes; the defaults suit gin/models/brainformer_tiny.gin."""

  min_sublayers: int = 4
  max_sublayers: int = 8
  mlp_dims: tuple[int, ...] = (160, 320, 480)  # FFN and expert widths
  routers: tuple[str, ...] = ("expert_choice", "top_k")
  capacity_factors: tuple[float, ...] = (0.5, 1.0, 2.0)
  top_k: int = 2  # of the "top_k" router

  def __post_init__(self):
    if not 1 <= self.min_sublayers <= self.max_sublayers or self.max_sublayers < 2:
      raise ConfigError(
          f"SearchSpace: min_sublayers={self.min_sublayers}, max_sublayers={self.max_sublayers}; "
          "need 1 <= min_sublayers <= max_sublayers and max_sublayers >= 2 (else one block)."
      )
    if not all(self.choices(setting) for setting in SETTING_KINDS):
      raise ConfigError(f"SearchSpace: every list of choices must be non-empty; got {self}.")
    if set(self.routers) - set(ROUTERS):
      raise ConfigError(f"SearchSpace.routers={self.routers}; expected some of {list(ROUTERS)}.")

  def choices(self, setting: str) -> tuple:
    """The values a sub-layer's `setting` (a key of SETTING_KINDS) may take."""
    return {
        "mlp_dim": self.mlp_dims,
        "router": self.routers,
        "capacity_factor": self.capacity_factors,
    }[setting]


def canonical_block(block: Sequence[Any], setting: str = "block") -> Block:
  """The block as LayerSpec.as_dict() lists (what logs and gin hold); a ConfigError names
  `setting` if it is not a valid block."""
  return [spec.as_dict() for spec in layer_spec.parse_block(block, setting)]


def _with(layer: dict[str, Any], setting: str, value: Any, space: SearchSpace) -> dict[str, Any]:
  """`layer` with `setting` = `value`; a "top_k" router brings the space's top_k along."""
  layer = {**layer, setting: value}
  if setting == "router":
    layer.pop("top_k", None)
    if value == "top_k":
      layer["top_k"] = space.top_k
  return layer


def _sublayer(kind: str, space: SearchSpace, rng: random.Random) -> dict[str, Any]:
  layer = {"kind": kind}
  for setting, kinds in SETTING_KINDS.items():
    if kind in kinds:
      layer = _with(layer, setting, rng.choice(space.choices(setting)), space)
  return layer


def random_block(space: SearchSpace, rng: random.Random) -> Block:
  """A block of random length and sub-layers, with an attention sub-layer (without one no token
  would see another)."""
  while True:
    length = rng.randint(space.min_sublayers, space.max_sublayers)
    kinds = [rng.choice(layer_spec.KINDS) for _ in range(length)]
    if layer_spec.ATTENTION in kinds:
      return canonical_block([_sublayer(kind, space, rng) for kind in kinds])


def _others(current: Any, choices: Sequence[Any]) -> list[Any]:
  return [c for c in choices if c != current]


def _sites(block: Block, space: SearchSpace) -> dict[str, list]:
  """Where each mutation can act and still leave a different block within the space's length,
  with an attention sub-layer: positions, or position pairs for "swap"."""
  n = len(block)
  attention = [i for i, layer in enumerate(block) if layer["kind"] == layer_spec.ATTENTION]
  removable = [i for i in range(n) if attention != [i]]  # all but a lone attention sub-layer
  sites = {
      "kind": removable,
      "swap": [(i, j) for i in range(n) for j in range(i + 1, n) if block[i] != block[j]],
      "insert": list(range(n + 1)) if n < space.max_sublayers else [],
      "delete": removable if n > space.min_sublayers else [],
  }
  for setting, kinds in SETTING_KINDS.items():
    sites[setting] = [
        i
        for i, layer in enumerate(block)
        if layer["kind"] in kinds and _others(layer.get(setting), space.choices(setting))
    ]
  return sites


def _mutated(
    block: Block, mutation: str, site: Any, space: SearchSpace, rng: random.Random
) -> Block:
  child = list(block)
  if mutation == "kind":
    kind = rng.choice(_others(block[site]["kind"], layer_spec.KINDS))
    child[site] = _sublayer(kind, space, rng)
  elif mutation == "swap":
    i, j = site
    child[i], child[j] = block[j], block[i]
  elif mutation == "insert":
    child.insert(site, _sublayer(rng.choice(layer_spec.KINDS), space, rng))
  elif mutation == "delete":
    del child[site]
  else:  # a setting of one sub-layer
    value = rng.choice(_others(block[site].get(mutation), space.choices(mutation)))
    child[site] = _with(block[site], mutation, value, space)
  return child


def mutate(block: Sequence[Any], space: SearchSpace, rng: random.Random) -> Block:
  """A block one change from `block`, never `block` itself: a sub-layer's kind, width, capacity
  factor or router, two sub-layers swapped, one inserted or deleted (within the space's length);
  it keeps an attention sub-layer. The change is drawn uniformly, then where it acts."""
  block = canonical_block(block)
  sites = {name: where for name, where in _sites(block, space).items() if where}
  mutation = rng.choice(list(sites))
  return canonical_block(_mutated(block, mutation, rng.choice(sites[mutation]), space, rng))


def _rank(record: dict[str, Any]) -> tuple[bool, float]:
  """Sort key: feasible before infeasible, then by eval loss (a failed run's last)."""
  loss = record["eval_loss"]
  return (not record["feasible"], math.inf if loss is None else loss)


def propose(
    index: int,
    members: Sequence[dict],
    space: SearchSpace,
    *,
    seed: int,
    population: int,
    sample: int,
) -> tuple[Block, Optional[int]]:
  """Candidate `index`'s block and its parent's index (None for a random one), given the
  population's records `members`, oldest first. A function of its arguments alone, so that
  replaying a log rebuilds the same population."""
  rng = random.Random(f"{seed}:{index}")
  if index <= population:
    return random_block(space, rng), None
  parent = min(rng.sample(list(members), sample), key=_rank)
  return mutate(parent["block"], space, rng), parent["index"]


def _read_log(path: str) -> list[dict]:
  """The log's records. An unfinished last line (a write cut by a kill) is ignored and cut off
  the file, so that the next record starts a line of its own."""
  if not os.path.exists(path):
    return []
  with open(path, "rb") as f:
    lines = f.read().splitlines(keepends=True)
  records = []
  for number, line in enumerate(lines, 1):
    try:
      records.append(json.loads(line) if line.endswith(b"\n") else None)
    except ValueError:
      records.append(None)
    if records[-1] is None and number < len(lines):
      raise UserError(
          f"{path}: line {number} is not a JSON record, and only the last line may be cut short; "
          f"delete the lines from {number} on to resume from there, or use another --out_dir."
      )
  if records and records[-1] is None:
    records.pop()
    with open(path, "r+b") as f:
      f.truncate(sum(len(line) for line in lines[:-1]))
  return records


def _append(path: str, record: dict) -> None:
  """Appends one line, on disk before it returns, so a kill leaves at most a cut last line."""
  with open(path, "a", encoding="utf-8") as f:
    f.write(json.dumps(record, default=benchmark_common.json_default) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _evaluate(objective: Objective, block: Block, limit: float) -> dict[str, Any]:
  result = objective(block)
  loss, seconds = result["eval_loss"], result["step_time_s"]
  feasible = loss is not None and seconds is not None and seconds <= limit
  return {**result, "feasible": feasible}


def _mismatch(log_path: str, what: str) -> UserError:
  return UserError(
      f"{log_path} was written with other settings ({what}); resume it with the same settings, "
      "or use another log path (--out_dir)."
  )


def _settings_diff(logged: dict, now: dict) -> str:
  keys = sorted(set(logged) | set(now), key=str)
  return "; ".join(
      f"{k}: {logged.get(k)!r} there, {now.get(k)!r} now"
      for k in keys
      if logged.get(k) != now.get(k)
  )


def _reference(
    objective: Objective, block: Block, done: list[dict], log_path: str, settings: dict
) -> dict[str, Any]:
  """The reference's record (index 0, the search's settings with it): from the log, or run."""
  if done:
    logged = done[0]
    if logged.get("settings") != settings:
      raise _mismatch(log_path, _settings_diff(logged.get("settings") or {}, settings))
    if logged["block"] != block:
      raise _mismatch(log_path, f"reference block {logged['block']} there, {block} now")
    return logged
  result = _evaluate(objective, block, math.inf)
  if not result["feasible"]:
    raise UserError(
        f"The reference block {summary(block)} gave no step time ({result.get('error')}); the "
        "search needs it as its constraint. Fix its run or give another --reference."
    )
  record = {"index": 0, "block": block, "parent": None, "reference": True, "settings": settings}
  record.update(result)
  _append(log_path, record)
  return record


def _check_search(candidates: int, population: int, sample: int, tolerance: float) -> None:
  if candidates < 1 or population < 1:
    raise ConfigError(
        f"--candidates={candidates} and --population={population} must be >= 1 (a search "
        "evaluates --candidates blocks, the first --population of them random)."
    )
  if not 1 <= sample <= population:
    raise ConfigError(
        f"--sample={sample} must be between 1 and --population={population} (the tournament "
        "draws --sample members of the population)."
    )
  if tolerance < 0:
    raise ConfigError(f"--tolerance={tolerance} must be >= 0 (0: no slower than the reference).")


def search(
    objective: Objective,
    space: SearchSpace,
    *,
    candidates: int,
    population: int,
    sample: int,
    seed: int,
    log_path: str,
    reference_block: Sequence[Any],
    tolerance: float,
    settings: Optional[dict[str, Any]] = None,
) -> tuple[Optional[dict], list[dict]]:
  """Regularised evolution of blocks (see the module docstring); (the best feasible candidate's
  record or None, every record with the reference's first).

  `objective(block)` returns at least eval_loss and step_time_s (None for a failed run). Every
  record goes to the JSONL `log_path` as it comes; the records already there (same seed, space,
  population, sample, tolerance, reference and `settings`, else a UserError) are replayed, not
  evaluated again.
  """
  _check_search(candidates, population, sample, tolerance)
  config = {"seed": seed, "population": population, "sample": sample, "tolerance": tolerance}
  config = json.loads(
      json.dumps({**config, "space": dataclasses.asdict(space), **(settings or {})})
  )
  done = _read_log(log_path)
  reference = _reference(
      objective, canonical_block(reference_block, "reference_block"), done, log_path, config
  )
  limit = (1 + tolerance) * reference["step_time_s"]
  records, members = [reference], collections.deque(maxlen=population)
  for index in range(1, candidates + 1):
    block, parent = propose(index, members, space, seed=seed, population=population, sample=sample)
    if index < len(done):
      record = done[index]
      if (record["block"], record["parent"]) != (block, parent):
        raise _mismatch(
            log_path,
            f"candidate {index} there is {summary(record['block'])}, "
            f"this run proposes {summary(block)}",
        )
    else:
      record = {"index": index, "block": block, "parent": parent}
      record.update(_evaluate(objective, block, limit))
      _append(log_path, record)
      print(f"candidate {index}/{candidates}: {_row(record, reference)}", flush=True)
    records.append(record)
    members.append(record)
  feasible = [r for r in records[1:] if r["feasible"]]
  return (min(feasible, key=_rank) if feasible else None), records


def summary(block: Sequence[dict]) -> str:
  """A block in one short line: "a" attention, "f<width>" FFN, "g<width>:<ec|k<top_k>>:<capacity
  factor>" MoE (no width: the model's)."""
  words = []
  for layer in block:
    width = layer.get("mlp_dim", "")
    if layer["kind"] == layer_spec.ATTENTION:
      words.append("a")
    elif layer["kind"] == layer_spec.FFN:
      words.append(f"f{width}")
    else:
      router = f"k{layer.get('top_k', '')}" if layer.get("router") == "top_k" else "ec"
      words.append(f"g{width}:{router}:{layer.get('capacity_factor', '')}")
  return " ".join(words)


def run_metrics(model_dir: str) -> dict[str, float]:
  """A run's final eval cross entropy (its score; the eval loss adds a z-loss regulariser), eval
  loss and median step time, leaving out the first log period (which holds the compilation)."""
  path = os.path.join(model_dir, "train_metrics.jsonl")
  rows = run_logs.read_jsonl(path)
  if len(rows) < 2:
    raise UserError(
        f"{path} has {len(rows)} rows; the step time leaves out the first, so a run needs two or "
        "more log periods (--steps >= 2)."
    )
  path = os.path.join(model_dir, "eval_metrics.jsonl")
  final = run_logs.read_jsonl(path)[-1]
  return {
      "eval_loss": final["cross_entropy"],
      "eval_total_loss": final["loss"],
      "step_time_s": statistics.median(row["step_time_s"] for row in rows[1:]),
  }


def train_objective(args: argparse.Namespace, out_dir: str) -> Objective:
  """The CLI's objective: trains a block as the tiny Brainformer (see the module docstring); a
  failed run gives eval_loss and step_time_s None and its error."""
  run_args = argparse.Namespace(
      steps=args.steps,
      batch_size=args.batch_size,
      eval_period=args.steps,
      eval_steps=args.eval_steps,
  )

  def objective(block: Block) -> dict[str, Any]:
    name = hashlib.sha256(json.dumps(block, sort_keys=True).encode()).hexdigest()[:16]
    model_dir = os.path.join(out_dir, "runs", name)
    shutil.rmtree(model_dir, ignore_errors=True)  # a run cut short by a kill starts over
    try:
      moe_experiment.train(
          summary(block),
          GIN_FILES,
          [f"TransformerConfig.block = {block!r}"],
          run_args,
          model_dir,
          log_period=max(1, args.steps // LOG_ROWS),
      )
    except UserError as e:
      return {"eval_loss": None, "step_time_s": None, "error": str(e), "model_dir": model_dir}
    return {**run_metrics(model_dir), "model_dir": model_dir}

  return objective


def _row(record: dict[str, Any], reference: dict[str, Any]) -> str:
  """block | eval loss | step s | vs reference | feasible"""
  seconds = record["step_time_s"]
  return " | ".join(
      (
          summary(record["block"]),
          "failed" if record["eval_loss"] is None else f"{record['eval_loss']:.4f}",
          "-" if seconds is None else f"{seconds:.4f}",
          "-" if seconds is None else f"{seconds / reference['step_time_s']:.2f}x",
          "yes" if record["feasible"] else "no",
      )
  )


def format_table(best: Optional[dict], records: Sequence[dict]) -> str:
  """The reference and the best candidates: eval loss, step time (and its ratio to the
  reference's), feasibility."""
  reference = records[0]
  ranked = sorted(records[1:], key=_rank)[:TABLE_ROWS]
  lines = [
      f"{len(records) - 1} candidates; a attention, f<width> FFN, g<width>:<router>:<capacity "
      "factor> MoE",
      "index | block | eval loss | step s | vs reference | feasible",
  ]
  for record in (reference, *ranked):
    lines.append(
        ("ref" if record is reference else str(record["index"])) + " | " + _row(record, reference)
    )
  if best is None:
    lines.append("No candidate was feasible; raise --tolerance or search longer.")
  return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m tools.block_search", description=__doc__)
  parser.add_argument("--out_dir", required=True, help="candidates.jsonl, search.json and runs/")
  parser.add_argument("--candidates", type=int, default=24)
  parser.add_argument("--population", type=int, default=8)
  parser.add_argument("--sample", type=int, default=3)
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--eval_steps", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--tolerance", type=float, default=0.1)
  parser.add_argument("--reference", default=None, help="a JSON list of sub-layers")
  parser.add_argument(
      "--routers",
      nargs="+",
      choices=ROUTERS,
      default=list(SearchSpace.routers),
      help="the MoE routers to search; top_k alone for a causal comparison (module docstring)",
  )
  return parser


# GLaM's layers at the tiny Brainformer's dims: [attention, FFN, attention, top-2 MoE] x 2 (8
# sub-layers, ~1.17M activated parameters per token beside Brainformer-1's ~1.05M).
GLAM_BLOCK = 2 * [
    {"kind": layer_spec.ATTENTION},
    {"kind": layer_spec.FFN},
    {"kind": layer_spec.ATTENTION},
    {"kind": layer_spec.MOE, "router": "top_k", "top_k": 2, "capacity_factor": 2.0},
]


def _reference_block(text: Optional[str]) -> Block:
  if text is None:
    return canonical_block(GLAM_BLOCK)
  try:
    block = json.loads(text)
  except ValueError as e:
    raise ConfigError(
        f"--reference is not JSON ({e}); give a list of sub-layers, e.g. "
        '\'[{"kind": "attention"}, {"kind": "ffn", "mlp_dim": 320}]\'.'
    ) from e
  return canonical_block(block, "--reference")


def _check_args(args: argparse.Namespace) -> None:
  if args.steps < 2:
    raise ConfigError(
        f"--steps={args.steps} must be >= 2: the step time leaves out the first log period (the "
        "compilation), so a run needs two or more."
    )
  for name in ("batch_size", "eval_steps"):
    if getattr(args, name) < 1:
      raise ConfigError(f"--{name}={getattr(args, name)} must be >= 1.")


def run(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
  """Runs (or resumes) the search; (what search.json holds, the table)."""
  _check_args(args)
  out_dir = os.path.abspath(args.out_dir)
  os.makedirs(out_dir, exist_ok=True)
  settings = {k: getattr(args, k) for k in ("steps", "batch_size", "eval_steps")}
  best, records = search(
      train_objective(args, out_dir),
      SearchSpace(routers=tuple(args.routers)),
      candidates=args.candidates,
      population=args.population,
      sample=args.sample,
      seed=args.seed,
      log_path=os.path.join(out_dir, "candidates.jsonl"),
      reference_block=_reference_block(args.reference),
      tolerance=args.tolerance,
      settings={**settings, "gin_files": list(GIN_FILES)},
  )
  results = {
      "settings": {**vars(args), "gin_files": list(GIN_FILES), "out_dir": out_dir},
      "reference": records[0],
      "best": best,
      "log": os.path.join(out_dir, "candidates.jsonl"),
  }
  return results, format_table(best, records)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parser().parse_args(argv)
  try:
    results, table = run(args)
  except UserError as e:
    return benchmark_common.report_user_error(e)
  benchmark_common.emit(results, table, os.path.join(results["settings"]["out_dir"], "search.json"))
  return 0


if __name__ == "__main__":
  sys.exit(main())
