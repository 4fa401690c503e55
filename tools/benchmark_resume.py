"""Resume benchmark: how long a run takes to get back to its data position, by step count.

  python -m tools.benchmark_resume [--gin_file=gin/runs/quickstart.gin] [--gin.NAME=VALUE ...] \
      [--steps 10,5000] [--repeats 3] [--json_out FILE] [--work_dir DIR]

For each step count N it prepares a MODEL_DIR whose checkpoint N holds the data position
after N batches: the real `trainers.train` command runs with TRAIN_STEPS=N, but its step
loop is replaced by one that reads N batches and saves, without computing steps (the
parameters stay the initial ones: resuming does not depend on their values). Then, in
alternating rounds, copies of it are resumed by the real command with TRAIN_STEPS=N+1 in
two ways:
  * restore: the input pipeline's saved state (what a resumed run does);
  * replay: the same checkpoint without its `data_iterator` item, as written before it
    existed, so the run skips N batches (`start_batch=N`) to its position.
Measured per run: `data_s`, the time `trainers.train` takes to build the training pipeline
at the data position (construction, first batch, restore or skip), and `resume_s`, the whole
command (gin, model init, checkpoint restore, compiling the step, one step, save: the
compile, some seconds on a CPU, varies most). Runs share this process; their output goes
to <work_dir>/*.log. Medians over --repeats are printed as a table and written as
JSON (--json_out, else printed).
"""

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Iterator, Optional, Sequence

import jax

from tools import benchmark_common
from trainers import train

MODES = ("restore", "replay")


def _flags(gin_files: Sequence[str], model_dir: str, steps: int, overrides: Sequence[str]):
  """The train command's flags: no eval, no prompts, a checkpoint at the last step only."""
  return [
      *(f"--gin_file={f}" for f in gin_files),
      f"--gin.MODEL_DIR='{model_dir}'",
      f"--gin.TRAIN_STEPS={steps}",
      "--gin.train.eval_dataset_cfg=None",
      "--gin.train.predict_prompts=[]",
      "--gin.train.eval_baselines=None",
      "--gin.CHECKPOINT_PERIOD=1000000",
      *overrides,
  ]


def _fast_forward(trainer, state, position, batches, checkpointer, writer, train_steps, *rest):
  """Stands in for train._step_loop (same arguments): reads the batches of `train_steps`
  steps without computing them and saves the state, at that step, with the data position."""
  del trainer, position, writer, rest
  for _ in range(train_steps):
    next(batches)
  state = state.replace(step=jax.numpy.asarray(train_steps, state.step.dtype))
  checkpointer.save(state, {"train_batches": train_steps}, batches)
  return state, {}


@contextlib.contextmanager
def _patched(module, name: str, value) -> Iterator[None]:
  real = getattr(module, name)
  setattr(module, name, value)
  try:
    yield
  finally:
    setattr(module, name, real)


def _run_train(argv: Sequence[str], log_path: str) -> None:
  """The train command in this process, its output in `log_path` (its tail on a failure)."""
  with open(log_path, "w", encoding="utf-8") as log:
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
      code = train.main(list(argv))
  if code != 0:
    with open(log_path, encoding="utf-8") as log:
      tail = "".join(log.readlines()[-15:])
    raise RuntimeError(f"trainers.train exited with {code} ({log_path}):\n{tail}")


def prepare(gin_files, overrides, model_dir: str, steps: int) -> None:
  """MODEL_DIR with checkpoint `steps` at the data position after `steps` batches."""
  with _patched(train, "_step_loop", _fast_forward):
    _run_train(_flags(gin_files, model_dir, steps, overrides), model_dir + ".log")


def resume_once(gin_files, overrides, prepared: str, work: str, steps: int, mode: str) -> dict:
  """One resume of a copy of `prepared` to step `steps`+1; its timings."""
  shutil.rmtree(work, ignore_errors=True)
  shutil.copytree(prepared, work)
  if mode == "replay":
    shutil.rmtree(os.path.join(work, "checkpoints", str(steps), "data_iterator"))
  timing, real = {}, train._train_batches

  def timed(*args, **kwargs):
    start = time.perf_counter()
    batches = real(*args, **kwargs)
    timing["data_s"] = time.perf_counter() - start
    return batches

  start = time.perf_counter()
  with _patched(train, "_train_batches", timed):
    _run_train(_flags(gin_files, work, steps + 1, overrides), work + ".log")
  resume_s = time.perf_counter() - start
  if not os.path.isdir(os.path.join(work, "checkpoints", str(steps + 1))):
    raise RuntimeError(f"the resumed run in {work} wrote no checkpoint {steps + 1}")
  return {"data_s": timing["data_s"], "resume_s": resume_s}


def run(args: argparse.Namespace, overrides: Sequence[str]) -> dict[str, Any]:
  work_dir = args.work_dir or tempfile.mkdtemp(prefix="podzoo_resume_")
  os.makedirs(work_dir, exist_ok=True)
  try:
    prepared = {}
    for steps in args.steps:
      prepared[steps] = os.path.join(work_dir, f"prepared_{steps}")
      shutil.rmtree(prepared[steps], ignore_errors=True)
      prepare(args.gin_file, overrides, prepared[steps], steps)
    samples = {(s, m): [] for s in args.steps for m in MODES}
    for _ in range(args.repeats):  # alternating rounds: drift on a shared machine hits all
      for steps in args.steps:
        for mode in MODES:
          samples[steps, mode].append(
              resume_once(
                  args.gin_file,
                  overrides,
                  prepared[steps],
                  os.path.join(work_dir, f"run_{steps}_{mode}"),
                  steps,
                  mode,
              )
          )
  finally:
    if not args.work_dir:
      shutil.rmtree(work_dir, ignore_errors=True)
  rows = [
      {
          "steps": steps,
          "mode": mode,
          "data_s": statistics.median(s["data_s"] for s in runs),
          "resume_s": statistics.median(s["resume_s"] for s in runs),
          "samples": runs,
      }
      for (steps, mode), runs in samples.items()
  ]
  return {"repeats": args.repeats, "rows": rows, "ratios": _ratios(rows, args.steps)}


def _ratios(rows: list[dict], steps: Sequence[int]) -> dict[str, float]:
  """data_s at the most steps over data_s at the fewest, per mode."""
  by = {(r["steps"], r["mode"]): r["data_s"] for r in rows}
  lo, hi = min(steps), max(steps)
  return {mode: by[hi, mode] / by[lo, mode] for mode in MODES}


def format_table(results: dict[str, Any]) -> str:
  lines = [
      f"Resume to the data position (medians of {results['repeats']} runs each)",
      f"{'step':>7} {'mode':>8} {'data position s':>16} {'whole resume s':>15}",
  ]
  for r in results["rows"]:
    lines.append(f"{r['steps']:>7} {r['mode']:>8} {r['data_s']:>16.2f} {r['resume_s']:>15.2f}")
  lines += [
      f"data position time, most/fewest steps: {mode} x{ratio:.2f}"
      for mode, ratio in results["ratios"].items()
  ]
  return "\n".join(lines)


def _steps(text: str) -> list[int]:
  steps = sorted({int(s) for s in text.split(",") if s.strip()})
  if not steps or steps[0] < 1:
    raise argparse.ArgumentTypeError(f"--steps wants positive step counts, e.g. 10,5000: {text!r}")
  return steps


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(
      prog="python -m tools.benchmark_resume",
      description=__doc__.split("\n")[0],
      allow_abbrev=False,
  )
  parser.add_argument("--gin_file", action="append", default=None)
  parser.add_argument("--steps", type=_steps, default=_steps("10,5000"))
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--work_dir", default=None, help="kept when given; a temporary one if not")
  parser.add_argument("--json_out", default=None)
  args, rest = parser.parse_known_args(list(argv))
  args.gin_file = args.gin_file or ["gin/runs/quickstart.gin"]
  if args.repeats < 1:
    parser.error(f"--repeats must be at least 1, got {args.repeats}")
  unknown = [a for a in rest if not a.startswith("--gin.")]
  if unknown:
    parser.error(
        f"unrecognized arguments: {' '.join(unknown)} (gin overrides are --gin.NAME=VALUE)"
    )
  return args, rest


def main(argv: Optional[Sequence[str]] = None) -> int:
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    results = run(args, overrides)
  except RuntimeError as e:
    return benchmark_common.report_user_error(e)
  results = {
      **benchmark_common.run_info(args.gin_file, overrides, ("jax", "tensorflow", "seqio")),
      **results,
  }
  benchmark_common.emit(results, format_table(results), args.json_out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
