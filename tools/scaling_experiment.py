"""Experiment: PaLM 2's compute-optimal scaling (IsoFLOP curves) at CPU scale.

  python -m tools.scaling_experiment [--budgets 1e11 3e11 1e12] [--size_factors 0.5 1 2 4 8 |
      --sizes N ...] [--batch_size 8] [--eval_steps 25] [--mixture_gin FILE] [--out_dir DIR] \
      [--json_out FILE] [--plot FILE]

For each compute budget C (FLOPs), several decoder-only models of N parameters each train on
D = C / (6 N) tokens: steps = ceil(D / (batch_size x sequence length)), the sequence length
being the mixture's TASK_FEATURE_LENGTHS["targets"]. Packing leaves some of each row empty,
so a run's actual tokens (train_metrics.jsonl's `target_tokens` per step, summed) fall short
of D (~79% on the catalog text) and its actual compute 6 N D_actual short of C; the tables
show both, and the power laws are fitted against each budget's actual FLOPs (its runs'
mean). Each budget's final eval losses against N make an IsoFLOP curve whose parabola in
ln N has its vertex at N_opt(C) (tools/scaling_laws.py); across budgets N_opt = a C^alpha and
D_opt = b C^beta, compared with PaLM 2's and Chinchilla's alpha ~ beta ~ 0.5. A budget whose
optimum lies at an end of its sizes is flagged ("optimum not bracketed; add sizes") and left
out of the power laws while at least two budgets are bracketed.

N counts NON-embedding parameters (Kaplan et al. 2020; tools/model_sizes.py, whose ladder
turns each wanted N into the nearest config): at these sizes the 8320 x d embedding table is
most of a model (the tables give total parameters too). By default each budget's sizes are
0.5, 1, 2, 4 and 8 times Chinchilla's N = (C / 120)^0.5 (20 tokens per parameter), snapped to
the ladder: skewed to larger models because the ladder stops at 13k parameters (one layer of
width 32) and the smallest models, training on the most tokens, cost the most time.

Each model trains through the real command line (`python -m trainers.train`, a process of its
own) from gin/models/decoder_only.gin, gin/runs/pretrain.gin, gin/runs/short_run.gin and the
mixture (--mixture_gin, default gin/mixtures/catalog_lm.gin), with the ladder's
TransformerConfig bindings. The learning rate follows Chinchilla, not short_run.gin's warm-up
and constant: trainers.optimizers.warmup_cosine_decay to short_run's peak 0.003 (AdamW),
warming up over min(50, steps / 10) steps and decaying to 10% at exactly the run's last step.
Same data order and seed for all. The eval loss is measured once, at the end (EVAL_PERIOD =
steps), on --eval_steps validation batches; the training data's tokens are counted once (one
pass over the train split), so each run reports the epochs it made.

Defaults and cost, measured on this 2-core CPU (shared, load ~1.5) with the catalog mixture,
batch 8 x 256, through the command line: N = 99k (d 64, 2 layers) trained 7.0k tokens/s,
N = 755k (d 128, 4 layers) 2.3k tokens/s, N = 2.1M (d 192, 5 layers) 1.3k tokens/s (~30
GFLOP/s counting the 8320-row output layer and attention, which dominate 6 N here), with
~25-30 s per run for start-up, compilation and evaluation; batch 4 ran 25% fewer tokens/s.
The default 3 budgets x 5 sizes (13k to 755k non-embedding parameters, 57k to 2.5M tokens,
at most half an epoch of the 5.2M-token catalog train split of the 93-language corpus) ran
in 26 minutes on 2 cores shared with other jobs; the budget 3e12 adds about three hours.

Writes a JSON of every run and fit, a PNG (left: IsoFLOP curves with their parabolas and
vertices; right: N_opt and D_opt against C with the fitted lines) and prints a table.
"""

import argparse
import math
import os
import sys
import tempfile
import time
from typing import Any, Optional, Sequence

import gin
import numpy as np

from model_zoo.errors import ConfigError
from tools import benchmark_common, model_sizes, moe_experiment, run_logs, scaling_laws

GIN_FILES = ("gin/models/decoder_only.gin", "gin/runs/pretrain.gin", "gin/runs/short_run.gin")
DEFAULT_MIXTURE_GIN = "gin/mixtures/catalog_lm.gin"
DEFAULT_BUDGETS = (1e11, 3e11, 1e12)  # ~30 minutes on 2 CPU cores
DEFAULT_SIZE_FACTORS = (0.5, 1.0, 2.0, 4.0, 8.0)
PEAK_LEARNING_RATE = 0.003  # gin/runs/short_run.gin's
MAX_WARMUP_STEPS = 50  # gin/runs/short_run.gin's
END_FRACTION = 0.1  # Chinchilla: cosine decay to 10% of the peak
TITLE = "Compute-optimal scaling at CPU scale (IsoFLOP curves)"
REFERENCE = "PaLM 2 and Chinchilla: ~0.5 each"
_configured_model = benchmark_common.model_configurable("scaling_experiment")


def train_steps(budget: float, n_params: int, tokens_per_step: int) -> int:
  """ceil(D / tokens per step), D = C / (6 N): the steps that spend `budget` on the model."""
  return math.ceil(scaling_laws.tokens_for(budget, n_params) / tokens_per_step)


def schedule_bindings(
    steps: int,
    learning_rate: float = PEAK_LEARNING_RATE,
    max_warmup_steps: int = MAX_WARMUP_STEPS,
) -> list[str]:
  """Chinchilla's schedule over exactly `steps` steps: a warm-up of min(max_warmup_steps,
  steps / 10) steps to `learning_rate`, then a cosine decay to END_FRACTION of it."""
  return [
      "LEARNING_RATE_SCHEDULE = @warmup_cosine_decay()",
      f"warmup_cosine_decay.learning_rate = {learning_rate}",
      f"warmup_cosine_decay.warmup_steps = {max(1, min(max_warmup_steps, steps // 10))}",
      f"warmup_cosine_decay.decay_steps = {steps}",
      f"warmup_cosine_decay.end_fraction = {END_FRACTION}",
  ]


def budget_sizes(
    budget: float, sizes: Optional[Sequence[float]], factors: Sequence[float]
) -> list[model_sizes.ModelSize]:
  """The ladder's models for one budget (`sizes`, else `factors` x Chinchilla's N), smallest
  first, each once."""
  wanted = sizes or [f * scaling_laws.CHINCHILLA.params(budget) for f in factors]
  rungs = {model_sizes.for_params(n) for n in wanted}
  if len(rungs) < 3:
    raise ConfigError(
        f"budget {budget:.3g}: the sizes {[f'{n:.3g}' for n in wanted]} give only "
        f"{len(rungs)} distinct models of the size ladder; an IsoFLOP parabola needs 3: "
        "spread --sizes or --size_factors wider."
    )
  return sorted(rungs, key=lambda s: s.non_embedding_params)


def trained_tokens(model_dir: str, steps: int, tokens_per_step: int) -> tuple[int, bool]:
  """(tokens, actual?): the logged target tokens summed over steps, else steps x per step."""
  rows = run_logs.read_jsonl(os.path.join(model_dir, "train_metrics.jsonl"))
  if not rows or any("target_tokens" not in r for r in rows):
    return steps * tokens_per_step, False
  total, previous = 0.0, 0
  for row in rows:
    total += (row["step"] - previous) * row["target_tokens"]
    previous = row["step"]
  return round(total), True


def read_run(
    model_dir: str, budget: float, size: model_sizes.ModelSize, steps: int, settings: dict
) -> dict[str, Any]:
  """One run's row of the results, from its MODEL_DIR's JSONL logs."""
  curve = moe_experiment.curves(model_dir)
  n = size.non_embedding_params
  tokens, actual = trained_tokens(model_dir, steps, settings["tokens_per_step"])
  return {
      "budget": budget,
      "n_params": n,
      "params_total": size.total_params(settings["vocab_size"]),
      "emb_dim": size.emb_dim,
      "num_layers": size.num_layers,
      "steps": steps,
      "tokens_nominal": round(scaling_laws.tokens_for(budget, n)),
      "tokens": tokens,
      "tokens_actual": actual,
      "flops": scaling_laws.flops(n, tokens),
      "epochs": tokens / settings["train_data_tokens"],
      "final_eval_loss": curve["eval_loss"][-1],
      "train_seconds": curve["train_seconds"][-1],
  }


def analyse(settings: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
  """The results: `settings`, the runs, each budget's IsoFLOP fit, and the power laws over
  the bracketed budgets (over all of them, flagged, when fewer than two are bracketed)."""
  budgets = []
  for budget in sorted({r["budget"] for r in runs}):
    mine = [r for r in runs if r["budget"] == budget]
    fit = scaling_laws.fit_isoflop(
        [r["n_params"] for r in mine], [r["final_eval_loss"] for r in mine]
    )
    flops = float(np.mean([r["flops"] for r in mine]))
    budgets.append(
        {
            "budget": budget,
            "flops_actual": flops,
            "n_opt": fit.n_opt,
            "tokens_opt": scaling_laws.tokens_for(flops, fit.n_opt),
            "loss_opt": fit.loss_opt,
            "bracketed": fit.bracketed,
            "parabola": list(fit.coefficients),
            "parabola_center": fit.center,
        }
    )
  bracketed = [b for b in budgets if b["bracketed"]]
  used = bracketed if len(bracketed) >= 2 else budgets
  law = scaling_laws.fit_scaling_law([b["flops_actual"] for b in used], [b["n_opt"] for b in used])
  return {
      **settings,
      "runs": runs,
      "budgets": budgets,
      "fit_budgets": [b["budget"] for b in used],
      "law_uses_unbracketed": len(bracketed) < 2,
      "law": {
          "alpha": law.params.exponent,
          "a": law.params.coefficient,
          "r_squared_params": law.params.r_squared,
          "beta": law.tokens.exponent,
          "b": law.tokens.coefficient,
          "r_squared_tokens": law.tokens.r_squared,
      },
  }


def format_table(r: dict[str, Any]) -> str:
  lines = [
      f"{len(r['runs'])} runs, batch {r['batch_size']} x {r['sequence_length']} tokens, on "
      f"{r['mixture_gin']} ({r['train_data_tokens']:,} train tokens); N = non-embedding "
      "parameters; eval loss on "
      f"{r['eval_steps']} validation batches",
      "budget C | N | total params | tokens trained | steps | epochs | eval loss | train s",
  ]
  for run in r["runs"]:
    lines.append(
        f"{run['budget']:.1e} | {run['n_params']:,} | {run['params_total']:,} | "
        f"{run['tokens']:,} | {run['steps']} | {run['epochs']:.2f} | "
        f"{run['final_eval_loss']:.4f} | {run['train_seconds']:.0f}"
    )
  lines.append("budget C | actual FLOPs | N_opt | D_opt | D/N | loss at N_opt | bracketed")
  for b in r["budgets"]:
    lines.append(
        f"{b['budget']:.1e} | {b['flops_actual']:.3e} | {b['n_opt']:,.0f} | "
        f"{b['tokens_opt']:,.0f} | {b['tokens_opt'] / b['n_opt']:.1f} | {b['loss_opt']:.4f} | "
        f"{'yes' if b['bracketed'] else 'NO'}"
    )
  law = r["law"]
  lines.append(
      f"N_opt = {law['a']:.3g} C^{law['alpha']:.3f} (R^2 {law['r_squared_params']:.3f}), "
      f"D_opt = {law['b']:.3g} C^{law['beta']:.3f} (R^2 {law['r_squared_tokens']:.3f}); "
      f"{REFERENCE}"
  )
  for b in r["budgets"]:
    if not b["bracketed"]:
      lines.append(f"WARNING: budget {b['budget']:.1e}: optimum not bracketed; add sizes.")
  if r["law_uses_unbracketed"]:
    lines.append(
        "WARNING: fewer than 2 budgets are bracketed, so the exponents rest on unbracketed "
        "optima (the best sampled sizes): add sizes."
    )
  return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel  (the [experiments] extra)

  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  figure, (isoflop, law_axes) = pyplot.subplots(1, 2, figsize=(12, 4.6))
  for b, color in zip(r["budgets"], pyplot.rcParams["axes.prop_cycle"].by_key()["color"] * 9):
    mine = [run for run in r["runs"] if run["budget"] == b["budget"]]
    n = np.array([run["n_params"] for run in mine], np.float64)
    isoflop.plot(n, [run["final_eval_loss"] for run in mine], "o", color=color)
    fit = scaling_laws.IsoFlopFit(
        tuple(b["parabola"]), b["parabola_center"], b["n_opt"], b["loss_opt"], b["bracketed"]
    )
    grid = np.geomspace(n.min() / 1.2, n.max() * 1.2, 100)
    isoflop.plot(grid, fit.loss_at(grid), "-", color=color, label=f"C = {b['budget']:.0e}")
    marker = "*" if b["bracketed"] else "x"
    isoflop.plot([b["n_opt"]], [b["loss_opt"]], marker, color=color, markersize=12)
  isoflop.set(
      xscale="log", xlabel="non-embedding parameters N", ylabel="final eval loss (nats/token)"
  )
  isoflop.set_title("IsoFLOP curves (* vertex, x not bracketed)", fontsize=10)
  isoflop.legend(fontsize=8)
  flops = np.array([b["flops_actual"] for b in r["budgets"]])
  line = np.geomspace(flops.min() / 2, flops.max() * 2, 50)
  law = r["law"]
  for key, name, coefficient, exponent, color in (
      ("n_opt", "N_opt", law["a"], law["alpha"], "C0"),
      ("tokens_opt", "D_opt", law["b"], law["beta"], "C1"),
  ):
    law_axes.plot(flops, [b[key] for b in r["budgets"]], "o", color=color)
    law_axes.plot(
        line, coefficient * line**exponent, "-", color=color, label=f"{name} ~ C^{exponent:.2f}"
    )
  law_axes.set(xscale="log", yscale="log", xlabel="training FLOPs C (6 N D, actual)")
  law_axes.set_title(f"Compute-optimal N and D ({REFERENCE})", fontsize=10)
  law_axes.legend(fontsize=8)
  figure.suptitle(TITLE)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  pyplot.close(figure)


def data_settings(mixture_gin: str) -> dict[str, Any]:
  """The mixture's vocab size, sequence length, name and train-split tokens, from the model
  and mixture gin files; the tokens counted in one pass (no shuffle, no packing)."""
  from trainers import data  # pylint: disable=import-outside-toplevel  (imports TensorFlow)
  from trainers.dataset_config import DatasetConfig  # pylint: disable=import-outside-toplevel

  gin.clear_config()
  model = benchmark_common.load_model(
      (GIN_FILES[0], mixture_gin),
      moe_experiment.REPO_ROOT,
      [],
      _configured_model,
      "scaling_experiment",
  )
  lengths = gin.query_parameter("%TASK_FEATURE_LENGTHS")
  name = gin.query_parameter("%MIXTURE_OR_TASK_NAME")
  if set(lengths) != {"targets"}:
    raise ConfigError(
        f"{mixture_gin} sets TASK_FEATURE_LENGTHS={lengths}; the experiment needs a causal LM "
        "task with targets only, e.g. gin/mixtures/catalog_lm.gin."
    )
  cfg = DatasetConfig(name, lengths, "train", 256, shuffle=False, pack=False, num_epochs=1)
  tokens = sum(
      int(model.num_target_tokens(batch))
      for batch in data.batches(cfg, model.FEATURE_CONVERTER_CLS)
  )
  return {
      "vocab_size": model.module.config.vocab_size,
      "sequence_length": lengths["targets"],
      "mixture_or_task_name": name,
      "train_data_tokens": tokens,
  }


def run(args: argparse.Namespace) -> dict[str, Any]:
  sizes = {b: budget_sizes(b, args.sizes, args.size_factors) for b in args.budgets}
  data = data_settings(args.mixture_gin)
  tokens_per_step = args.batch_size * data["sequence_length"]
  settings = {
      "gin_files": [*GIN_FILES, args.mixture_gin],
      "mixture_gin": args.mixture_gin,
      **data,
      "batch_size": args.batch_size,
      "tokens_per_step": tokens_per_step,
      "eval_steps": args.eval_steps,
      "params_counted": "non-embedding (Kaplan et al. 2020)",
  }
  plan = [
      (budget, size, train_steps(budget, size.non_embedding_params, tokens_per_step))
      for budget in args.budgets
      for size in sizes[budget]
  ]
  out_dir = os.path.abspath(args.out_dir or tempfile.mkdtemp(prefix="scaling_experiment_"))
  runs = []
  for i, (budget, size, steps) in enumerate(plan):
    n = size.non_embedding_params
    model_dir = os.path.join(out_dir, f"C{budget:.0e}_N{n}")
    run_args = argparse.Namespace(
        steps=steps, batch_size=args.batch_size, eval_period=steps, eval_steps=args.eval_steps
    )
    start = time.perf_counter()
    moe_experiment.train(
        f"run {i + 1}/{len(plan)}: C={budget:.1e} N={n:,}",
        settings["gin_files"],
        [*size.gin_bindings(), *schedule_bindings(steps)],
        run_args,
        model_dir,
    )
    row = read_run(model_dir, budget, size, steps, settings)
    runs.append({**row, "wall_seconds": time.perf_counter() - start})
  return analyse(settings, runs)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m tools.scaling_experiment",
      description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--budgets", type=float, nargs="+", default=list(DEFAULT_BUDGETS))
  sizes = parser.add_mutually_exclusive_group()
  sizes.add_argument(
      "--sizes", type=float, nargs="+", default=None, help="non-embedding N, every budget"
  )
  sizes.add_argument(
      "--size_factors",
      type=float,
      nargs="+",
      default=list(DEFAULT_SIZE_FACTORS),
      help="each budget's sizes as multiples of Chinchilla's N = (C / 120)^0.5",
  )
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--eval_steps", type=int, default=25)
  parser.add_argument("--mixture_gin", default=DEFAULT_MIXTURE_GIN)
  parser.add_argument("--out_dir", default=None, help="the runs' MODEL_DIRs go here")
  parser.add_argument("--json_out", default="scaling_experiment.json")
  parser.add_argument("--plot", default="scaling_experiment.png")
  args = parser.parse_args(argv)
  benchmark_common.require_positive(parser, args, ("batch_size", "eval_steps"))
  for name in ("budgets", "sizes", "size_factors"):
    values = getattr(args, name) or []
    if not all(math.isfinite(v) and v > 0 for v in values):
      parser.error(f"--{name} must be positive numbers; got {values}")
  if len(set(args.budgets)) < 2:
    parser.error(
        f"--budgets needs at least 2 distinct budgets for the power laws; got {args.budgets}"
    )
  if not os.path.exists(os.path.join(moe_experiment.REPO_ROOT, args.mixture_gin)):
    parser.error(f"--mixture_gin={args.mixture_gin}: no such file under {moe_experiment.REPO_ROOT}")
  return benchmark_common.finish_experiment(run, args, plot, format_table)


if __name__ == "__main__":
  sys.exit(main())
