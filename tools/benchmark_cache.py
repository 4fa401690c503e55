"""Benchmark: the MT mixture's input pipeline with and without the offline cache.

  python -m tools.benchmark_cache [--min_messages 5000] [--steps 40] [--batch_size 32] \
      [--repeats 3] [--workers 2] [--tasks_per_job 6] [--out_dir DIR] \
      [--json_out benchmark_cache.json]

1. `python -m trainers.cache_tasks` caches the mixture's tasks (gin/mixtures/mt.gin with
   mt_mixture.min_messages; the DirectRunner with --workers worker processes, a job per
   --tasks_per_job tasks), timed.
2. Each mode (on the fly, cached) in a fresh process, --repeats times, alternating: the
   seconds to the first batch of the mixture's training data (tasks/pipeline.get_batches:
   every task's pipeline built, vocabularies loaded, the first rows preprocessed) and the
   batches/s of the next 50.
3. Each mode trains encoder_decoder_tiny for --steps steps through `python -m
   trainers.train`; its input wait (the share of the run's step time spent waiting for the
   next batch, train_metrics.jsonl's input_wait_fraction) after the first log period.
Prints a table of medians and writes the JSON.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional, Sequence

from tools import benchmark_common, moe_experiment, run_logs

GIN_FILES = (
    "gin/models/encoder_decoder_tiny.gin",
    "gin/runs/pretrain.gin",
    "gin/mixtures/mt.gin",
)
FEATURE_LENGTHS = {"inputs": 64, "targets": 64}
MODES = ("on the fly", "cached")
NEXT_BATCHES = 50


def run_flags(args: argparse.Namespace, model_dir: str, cache_dir: Optional[str]) -> list[str]:
  bindings = [
      f"mt_mixture.min_messages={args.min_messages}",
      f"MODEL_DIR='{model_dir}'",
      f"TASK_FEATURE_LENGTHS={FEATURE_LENGTHS}",
      f"BATCH_SIZE={args.batch_size}",
      f"TRAIN_STEPS={args.steps}",
      f"EVAL_PERIOD={args.steps}",
      "EVAL_STEPS=1",
      f"CHECKPOINT_PERIOD={args.steps}",
      f"train.log_period={args.steps // 2}",
      "train.eval_baselines=None",
  ]
  if cache_dir:
    bindings.append(f"DatasetConfig.cache_dir='{cache_dir}'")
  return [f"--gin_file={f}" for f in GIN_FILES] + [f"--gin.{b}" for b in bindings]


def pipeline_options(workers: int) -> list[str]:
  """The DirectRunner with `workers` processes (in this process when 1)."""
  if workers == 1:
    return ["--runner=DirectRunner"]
  return [
      "--runner=DirectRunner",
      f"--direct_num_workers={workers}",
      "--direct_running_mode=multi_processing",
  ]


def first_batch(min_messages: int, batch_size: int, cache_dir: Optional[str]) -> dict[str, float]:
  """In this process: seconds to the mixture's first training batch, then batches/s."""
  start = time.perf_counter()
  from tasks import pipeline  # pylint: disable=import-outside-toplevel  (timed: TF, SeqIO)
  from tasks.mt import tasks as mt_tasks  # pylint: disable=import-outside-toplevel

  name = mt_tasks.mt_mixture(min_messages)
  batches = iter(
      pipeline.get_batches(
          name,
          FEATURE_LENGTHS,
          "train",
          batch_size,
          feature_converter="encdec",
          cache_dir=cache_dir,
      )
  )
  next(batches)
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(NEXT_BATCHES):
    next(batches)
  return {"first_batch_s": first, "batches_per_s": NEXT_BATCHES / (time.perf_counter() - start)}


def probe(args: argparse.Namespace, cache_dir: Optional[str]) -> dict[str, float]:
  """first_batch() in a fresh Python process (nothing imported or built yet)."""
  code = (
      "import json; from tools import benchmark_cache as b; "
      f"print(json.dumps(b.first_batch({args.min_messages}, {args.batch_size}, {cache_dir!r})))"
  )
  done = subprocess.run(
      [sys.executable, "-c", code],
      cwd=moe_experiment.REPO_ROOT,
      capture_output=True,
      text=True,
      check=True,
  )
  return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict[str, Any]:
  out_dir = os.path.abspath(args.out_dir or tempfile.mkdtemp(prefix="benchmark_cache_"))
  cache_dir = os.path.join(out_dir, "cache")
  start = time.perf_counter()
  subprocess.run(
      [
          sys.executable,
          "-m",
          "trainers.cache_tasks",
          *run_flags(args, out_dir, cache_dir),
          f"--gin.cache_tasks.pipeline_options={pipeline_options(args.workers)}",
          f"--gin.cache_tasks.tasks_per_job={args.tasks_per_job}",
      ],
      cwd=moe_experiment.REPO_ROOT,
      check=True,
  )
  results: dict[str, Any] = {
      "settings": {
          k: getattr(args, k)
          for k in ("min_messages", "steps", "batch_size", "repeats", "workers", "tasks_per_job")
      },
      "cache_job_s": time.perf_counter() - start,
      "tasks": len(os.listdir(cache_dir)),
      "modes": {mode: {"probes": []} for mode in MODES},
  }
  dirs = dict(zip(MODES, (None, cache_dir)))
  for _ in range(args.repeats):
    for mode in MODES:
      results["modes"][mode]["probes"].append(probe(args, dirs[mode]))
  for mode in MODES:
    model_dir = os.path.join(out_dir, mode.replace(" ", "_"))
    subprocess.run(
        [sys.executable, "-m", "trainers.train", *run_flags(args, model_dir, dirs[mode])],
        cwd=moe_experiment.REPO_ROOT,
        check=True,
    )
    rows = run_logs.read_run(model_dir).train
    summary = results["modes"][mode]
    for key in ("first_batch_s", "batches_per_s"):
      summary[key] = statistics.median(p[key] for p in summary["probes"])
    summary["input_wait_fraction"] = rows[-1]["input_wait_fraction"]
    summary["step_time_s"] = rows[-1]["step_time_s"]
  return results


def format_table(r: dict[str, Any]) -> str:
  lines = [
      f"MT mixture (min_messages={r['settings']['min_messages']}: {r['tasks']} tasks), batch "
      f"{r['settings']['batch_size']}; cache job {r['cache_job_s']:.0f} s "
      f"({r['settings']['workers']} workers, {r['settings']['tasks_per_job']} tasks a job); medians of "
      f"{r['settings']['repeats']} fresh processes",
      "input | first batch (s) | batches/s after | train input wait | step time (s)",
  ]
  for mode, m in r["modes"].items():
    lines.append(
        f"{mode} | {m['first_batch_s']:.1f} | {m['batches_per_s']:.1f} | "
        f"{m['input_wait_fraction']:.1%} | {m['step_time_s']:.3f}"
    )
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tools.benchmark_cache", description=__doc__)
  parser.add_argument("--min_messages", type=int, default=5000)
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--tasks_per_job", type=int, default=6, help="0: one Beam job")
  parser.add_argument("--out_dir", default=None)
  parser.add_argument("--json_out", default="benchmark_cache.json")
  args = parser.parse_args(argv)
  benchmark_common.require_positive(
      parser, args, ("min_messages", "steps", "batch_size", "repeats", "workers")
  )
  if args.steps % 2:
    parser.error(f"--steps={args.steps} must be even (two log periods; the first compiles)")
  results = run(args)
  benchmark_common.emit(results, format_table(results), args.json_out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
