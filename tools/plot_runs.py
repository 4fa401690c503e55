"""`python -m tools.plot_runs MODEL_DIR [MODEL_DIR ...]`: runs' train and eval curves in one
PNG, and their final figures side by side in a printed table (and a JSON).

  python -m tools.plot_runs /tmp/run_a /tmp/run_b [--labels a b] \
      [--metrics loss accuracy ...] [--plot runs.png] [--json_out runs.json]

Each metric is a row of two panels, against training steps and against training time (the
seconds spent in train steps, from step_time_s: evals and checkpoints not counted); each run
has one colour, its train rows solid and its eval rows dashed. The default metrics are
loss, cross entropy, accuracy, learning rate and tokens/s, then the MoE layers' loss terms
and router diagnostics (aux/..., metrics/...) where a run logged them; per-expert loads
(one curve per expert and layer) are left out unless named in --metrics. The table gives
each run's last step, training time, last train and eval value of each metric and median
tokens/s. Only the runs' JSONL logs are read (tools/run_logs.py), so a run still going can
be plotted.
"""

import argparse
import os
import sys
from typing import Any, Optional, Sequence

import numpy as np

from model_zoo.errors import UserError
from tools import benchmark_common, run_logs

DEFAULT_METRICS = ("loss", "cross_entropy", "accuracy", "learning_rate", "tokens_per_second")
SPLITS = ("train", "eval")


def is_moe_metric(name: str) -> bool:
  """A MoE loss term or router diagnostic, not a per-item one (a path part that is an index)."""
  return name.startswith(("aux/", "metrics/")) and not any(p.isdigit() for p in name.split("/"))


def chosen_metrics(runs: Sequence[run_logs.RunLog], asked: Sequence[str]) -> list[str]:
  """`asked`, each of which some run must have logged; by default see the module docstring."""
  logged = set().union(*(run.metrics() for run in runs))
  if asked:
    missing = [m for m in asked if m not in logged]
    if missing:
      raise UserError(
          f"No run logged {missing}; --metrics takes any of: {', '.join(sorted(logged))}."
      )
    return list(asked)
  return [m for m in DEFAULT_METRICS if m in logged] + sorted(filter(is_moe_metric, logged))


def series(run: run_logs.RunLog, split: str, metric: str) -> tuple[list[int], list[float]]:
  """(steps, values) of `metric` in the run's `split` log, where logged."""
  rows = [row for row in getattr(run, split) if metric in row]
  return [row["step"] for row in rows], [row[metric] for row in rows]


def labels_for(model_dirs: Sequence[str], given: Sequence[str]) -> list[str]:
  """`given`, else each MODEL_DIR's last part (its whole path where two share one)."""
  if given:
    if len(given) != len(model_dirs):
      raise UserError(f"--labels has {len(given)} names for {len(model_dirs)} MODEL_DIRs.")
    return list(given)
  names = [os.path.basename(os.path.normpath(d)) for d in model_dirs]
  return names if len(set(names)) == len(names) else list(model_dirs)


def plot(
    runs: Sequence[run_logs.RunLog], labels: Sequence[str], metrics: Sequence[str], path: str
) -> dict[str, int]:
  """Writes the PNG; returns the number of curves in each metric's panels."""
  import matplotlib  # pylint: disable=import-outside-toplevel  (the [experiments] extra)

  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  figure, axes = pyplot.subplots(
      len(metrics), 2, figsize=(11, 2.6 * len(metrics)), squeeze=False, sharex="col"
  )
  colours = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]
  curves = {}
  for (by_step, by_time), metric in zip(axes, metrics):
    curves[metric] = 0
    for index, (run, label) in enumerate(zip(runs, labels)):
      for split, style in zip(SPLITS, ("-", "--")):
        steps, values = series(run, split, metric)
        if not steps:
          continue
        look = dict(color=colours[index % len(colours)], linestyle=style, label=f"{label} {split}")
        by_step.plot(steps, values, **look)
        by_time.plot(run.seconds_at(steps), values, **look)
        curves[metric] += 1
    by_step.set_ylabel(metric, fontsize=8)
    by_step.legend(fontsize=7)
  axes[-1][0].set_xlabel("training step")
  axes[-1][1].set_xlabel("training time (s in train steps)")
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  pyplot.close(figure)
  return curves


def final_figures(run: run_logs.RunLog, metrics: Sequence[str]) -> dict[str, Any]:
  """The run's last step and training time, each metric's last train and eval value, and the
  median tokens/s over its train rows (None where not logged)."""
  figures: dict[str, Any] = {
      "last step": run.train[-1]["step"] if run.train else None,
      "training time (s)": run.train_seconds[-1] if run.train else None,
  }
  for metric in metrics:
    for split in SPLITS:
      _, values = series(run, split, metric)
      figures[f"{split} {metric}"] = values[-1] if values else None
  _, rates = series(run, "train", "tokens_per_second")
  figures["median tokens/s"] = float(np.median(rates)) if rates else None
  return figures


def format_table(figures: dict[str, dict[str, Any]]) -> str:
  """One row per figure, one column per run."""
  labels = list(figures)
  names = list(next(iter(figures.values())))
  cell = lambda v: "-" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
  rows = [["", *labels]] + [[n, *(cell(figures[label][n]) for label in labels)] for n in names]
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  return "\n".join(
      "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
      for row in rows
  )


def run(args: argparse.Namespace) -> dict[str, Any]:
  runs = [run_logs.read_run(d) for d in args.model_dirs]
  labels = labels_for(args.model_dirs, args.labels)
  metrics = chosen_metrics(runs, args.metrics)
  curves = plot(runs, labels, metrics, args.plot)
  return {
      "model_dirs": list(args.model_dirs),
      "metrics": metrics,
      "curves": curves,
      "runs": {label: final_figures(r, metrics) for label, r in zip(labels, runs)},
  }


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tools.plot_runs", description=__doc__)
  parser.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR")
  parser.add_argument("--labels", nargs="+", default=[], help="one name per MODEL_DIR")
  parser.add_argument("--metrics", nargs="+", default=[], help="the metrics to plot")
  parser.add_argument("--plot", default="runs.png")
  parser.add_argument("--json_out", default="runs.json")
  args = parser.parse_args(argv)
  try:
    results = run(args)
  except UserError as e:
    return benchmark_common.report_user_error(e)
  benchmark_common.emit(results, format_table(results["runs"]), args.json_out)
  print(f"Wrote {args.json_out} and {args.plot}.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
