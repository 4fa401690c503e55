"""Experiment: dense vs GLaM (top-2, E experts) at equal activated FLOPs per token, on the
multilingual ASR LM text mixture; eval loss against steps and against training time.

  python -m tools.moe_experiment [--experts 4 8 16] [--steps 1500] [--eval_period 100] \
      [--batch_size 16] [--dispatch einsum] [--out_dir DIR] [--json_out FILE] [--plot FILE]

Each model is trained by the real command line (`python -m trainers.train`, a process of its
own) from gin/models/glam_tiny.gin, gin/runs/pretrain.gin, gin/runs/short_run.gin and
gin/mixtures/asr_lm.gin, with the bindings of tools/benchmark_moe.py: the dense model has
TransformerConfig.moe = None; GLaM E=e has e experts, each TransformerConfig.mlp_dim / 2
wide, so a token's two experts cost one dense FFN. Same data order, seed, optimizer and
schedule for all. The curves come from each run's MODEL_DIR: eval_metrics.jsonl (the eval
loss every --eval_period steps, on --eval_steps validation batches) and train_metrics.jsonl
(training time: each log period's step_time_s times its steps, summed; a period's wall time
includes the evaluation that ended the period before it, and the first one the compilation,
alike for every model).

GLaM's claim (Du et al. 2022): at equal activated compute per token, the MoE model reaches
a lower loss. Writes a JSON of every curve, a PNG (eval loss against steps and against
training seconds) and prints a table: final eval loss, its change from dense, training time
and its ratio to dense, total and activated parameters.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from model_zoo.errors import UserError
from tools import benchmark_common, benchmark_moe, benchmark_train, run_logs

GIN_FILES = (
    "gin/models/glam_tiny.gin",
    "gin/runs/pretrain.gin",
    "gin/runs/short_run.gin",
    "gin/mixtures/asr_lm.gin",
)
MODEL_GIN_FILES = (GIN_FILES[0], GIN_FILES[-1])  # the model's dims (the mixture sets the vocab)
TITLE = "Dense vs GLaM at equal activated FLOPs per token (ASR LM text)"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the gin paths' base


def curves(model_dir: str) -> dict[str, list[float]]:
  """Eval loss by step and by training seconds (see the module docstring) from a MODEL_DIR."""
  run = run_logs.read_run(model_dir)
  logged = {row["step"] for row in run.train}
  evals = [r for r in run.eval if "loss" in r]
  missing = [r["step"] for r in evals if r["step"] not in logged]
  if missing:
    raise UserError(
        f"{model_dir}: eval steps {missing} have no training log row; the experiment needs "
        "EVAL_PERIOD to be a multiple of the log period."
    )
  steps = [r["step"] for r in evals]
  return {
      "step": steps,
      "train_seconds": run.seconds_at(steps),
      "eval_loss": [r["loss"] for r in evals],
  }


def train(
    name: str,
    gin_files: Sequence[str],
    bindings: Sequence[str],
    args: argparse.Namespace,
    model_dir: str,
    log_period: Optional[int] = None,
) -> None:
  """Trains one model through `python -m trainers.train` for args.steps steps, evaluating
  every args.eval_period (args: steps, batch_size, eval_period, eval_steps) and logging every
  `log_period` steps (default: at each evaluation)."""
  flags = [f"--gin_file={f}" for f in gin_files] + [
      f"--gin.{b.replace(' = ', '=')}"
      for b in (
          *bindings,
          f"MODEL_DIR = '{model_dir}'",
          f"TRAIN_STEPS = {args.steps}",
          f"BATCH_SIZE = {args.batch_size}",
          f"EVAL_PERIOD = {args.eval_period}",
          f"EVAL_STEPS = {args.eval_steps}",
          f"CHECKPOINT_PERIOD = {args.steps}",
          f"train.log_period = {log_period or args.eval_period}",
      )
  ]
  print(f"== {name}: python -m trainers.train {' '.join(flags)}", flush=True)
  # A SIGTERM to this process raises SystemExit here, and subprocess.run then kills the run,
  # so a killed experiment leaves no training process behind to write into model_dir.
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
  done = subprocess.run(
      [sys.executable, "-m", "trainers.train", *flags], cwd=REPO_ROOT, check=False
  )
  if done.returncode:
    raise UserError(f"Training {name} failed (exit {done.returncode}); its log is above.")


def parameters(model) -> dict[str, int]:
  """Total and activated parameters (tools/benchmark_train.py's count) of a Model."""
  tokens = np.zeros((1, 8), np.int32)
  batch = {"decoder_input_tokens": tokens, "decoder_target_tokens": tokens}
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), batch))
  cfg = model.module.config
  counts = benchmark_train.param_counts(
      params, cfg.tie_embeddings, benchmark_train.transformer_fraction(cfg)
  )
  return {k: counts[k] for k in ("params_total", "params_activated")}


def run(args: argparse.Namespace) -> dict[str, Any]:
  variants = benchmark_moe.load_variants(
      MODEL_GIN_FILES, REPO_ROOT, [], args.experts, [args.dispatch]
  )
  out_dir = os.path.abspath(args.out_dir or tempfile.mkdtemp(prefix="moe_experiment_"))
  results = {}
  for name, (bindings, model) in variants.items():
    model_dir = os.path.join(out_dir, name.replace(" ", "_").replace("=", ""))
    train(name, GIN_FILES, bindings, args, model_dir)
    results[name] = {**curves(model_dir), **parameters(model)}
  return summarise(vars(args), results)


def summarise(
    settings: dict[str, Any],
    models: dict[str, dict],
    keys: Sequence[str] = ("steps", "batch_size", "eval_period", "eval_steps", "dispatch"),
    gin_files: Sequence[str] = GIN_FILES,
) -> dict[str, Any]:
  """The results: the settings named by `keys`, and each model's curves with its final eval
  loss and training time beside the dense model's."""
  dense = models[benchmark_moe.DENSE]
  for row in models.values():
    row["final_eval_loss"] = row["eval_loss"][-1]
    row["eval_loss_vs_dense"] = row["final_eval_loss"] - dense["eval_loss"][-1]
    row["train_seconds_vs_dense"] = row["train_seconds"][-1] / dense["train_seconds"][-1]
  return {"gin_files": list(gin_files), **{k: settings[k] for k in keys}, "models": models}


def format_table(r: dict[str, Any]) -> str:
  lines = [
      f"{r['steps']} steps of batch {r['batch_size']} on the ASR LM mixture; eval loss on "
      f"{r['eval_steps']} validation batches",
      "model | params | activated | final eval loss | vs dense | train s | vs dense",
  ]
  for name, m in r["models"].items():
    lines.append(
        f"{name} | {m['params_total'] / 1e6:.2f}M | {m['params_activated'] / 1e6:.2f}M | "
        f"{m['final_eval_loss']:.4f} | {m['eval_loss_vs_dense']:+.4f} | "
        f"{m['train_seconds'][-1]:.0f} | {m['train_seconds_vs_dense']:.2f}x"
    )
  return "\n".join(lines)


def plot(r: dict[str, Any], path: str, title: str = TITLE) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel  (the [experiments] extra)

  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  figure, (by_step, by_time) = pyplot.subplots(1, 2, figsize=(11, 4.2), sharey=True)
  for name, m in r["models"].items():
    style = dict(marker="o", markersize=3, label=name)
    by_step.plot(m["step"], m["eval_loss"], **style)
    by_time.plot(m["train_seconds"], m["eval_loss"], **style)
  by_step.set(xlabel="training step", ylabel="eval loss (nats/token)")
  by_time.set(xlabel="training time (s, this CPU)")
  by_step.legend()
  figure.suptitle(title)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  pyplot.close(figure)


def add_run_arguments(parser: argparse.ArgumentParser, name: str) -> None:
  """The flags every training experiment takes; its outputs default to `name`.json and .png."""
  parser.add_argument("--steps", type=int, default=1500)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--eval_period", type=int, default=100)
  parser.add_argument("--eval_steps", type=int, default=20)
  parser.add_argument("--out_dir", default=None, help="the runs' MODEL_DIRs go here")
  parser.add_argument("--json_out", default=f"{name}.json")
  parser.add_argument("--plot", default=f"{name}.png")


def experiment_main(
    parser: argparse.ArgumentParser,
    argv: Optional[Sequence[str]],
    run_fn: Callable[[argparse.Namespace], dict[str, Any]],
    title: str,
    table: Callable[[dict[str, Any]], str] = format_table,
    plot_fn: Optional[Callable[[dict[str, Any], str], None]] = None,
) -> int:
  """Checks the run flags, runs, and writes the plot (`plot_fn(results, path)`, by default
  the eval-loss curves titled `title`), the JSON and the `table`."""
  args = parser.parse_args(argv)
  benchmark_common.require_positive(
      parser, args, ("steps", "batch_size", "eval_period", "eval_steps")
  )
  if args.steps % args.eval_period:
    parser.error(f"--steps={args.steps} must be a multiple of --eval_period={args.eval_period}")
  return benchmark_common.finish_experiment(
      run_fn, args, plot_fn or (lambda results, path: plot(results, path, title)), table
  )


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tools.moe_experiment", description=__doc__)
  parser.add_argument("--experts", type=int, nargs="+", default=[4, 8, 16])
  parser.add_argument("--dispatch", default="einsum", choices=("einsum", "dropless"))
  add_run_arguments(parser, "moe_experiment")
  return experiment_main(parser, argv, run, TITLE)


if __name__ == "__main__":
  sys.exit(main())
