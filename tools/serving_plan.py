"""Profiles finished runs for serving, then plans their placement (AlpaServe's search).

  python -m tools.serving_plan profile --run a=/tmp/run_a --run b=/tmp/run_b \
      [--shapes 1x1,2x1,1x2] [--batch_sizes 1,2,4] [--length 128] --out profiles.jsonl
  python -m tools.serving_plan place --profiles profiles.jsonl --devices 8 \
      --device_memory_gb 16 --rate a=2 --rate b=0.5 [--cv 4] [--slo_scale 5] [--seconds 600]

`profile` measures each run (its config.gin and newest checkpoint) on this machine's devices
for every shape (STAGESxTENSOR), scoring a batch of --length tokens at each batch size, and
writes the profiles (JSON Lines) that `place`, the simulator and `serve.profile_file` read.
`place` simulates Gamma arrivals at each model's rate (requests/s) and CV for --seconds,
searches the placement, and prints it as `serve.placement` takes it, with the simulated SLO
attainment (SLO: --slo_scale x each model's single-device latency) beside replication's.
"""

import argparse
import sys
from typing import Optional, Sequence

import jax

from model_zoo.errors import UserError
from trainers.serving import placement, profiler, profiles, runs, workload
from trainers.serving.profiles import ParallelConfig


def parse_shape(text: str) -> ParallelConfig:
  stages, _, tensor = text.partition("x")
  if not (stages.isdigit() and tensor.isdigit()):
    raise UserError(f"{text!r} is not a shape STAGESxTENSOR, e.g. 2x1")
  return ParallelConfig(int(stages), int(tensor))


def parse_pairs(pairs: Sequence[str], flag: str) -> dict[str, str]:
  out = {}
  for pair in pairs:
    name, eq, value = pair.partition("=")
    if not (name and eq and value):
      raise UserError(f"{flag} {pair!r}: expected NAME=VALUE")
    out[name] = value
  return out


def placement_text(chosen) -> str:
  """A placement as serve.placement takes it ('1x2:a,b 2x1:a'); empty groups left out."""
  return " ".join(f"{g.config}:{','.join(g.models)}" for g in chosen.groups if g.models)


def profile(args: argparse.Namespace) -> str:
  shapes = [parse_shape(s) for s in args.shapes.split(",")]
  sizes = [int(b) for b in args.batch_sizes.split(",")]
  measured = []
  for name, model_dir in parse_pairs(args.run, "--run").items():
    served = runs.load(name, model_dir)
    measured.append(
        profiler.profile_model(
            name,
            served.model.module.config,
            served.params,
            shapes,
            sizes,
            args.length,
            jax.devices(),
        )
    )
  profiles.save(measured, args.out)
  lines = [f"wrote {args.out}", "model | shape | batch | stage seconds | MiB per device"]
  for p in measured:
    for config, on in sorted(p.configs.items()):
      for batch, stages in sorted(on.stage_latency_s.items()):
        seconds = " ".join(f"{s:.4f}" for s in stages)
        lines.append(
            f"{p.name} | {config} | {batch} | {seconds} | {on.memory_per_device / 2**20:.1f}"
        )
  return "\n".join(lines)


def place(args: argparse.Namespace) -> str:
  measured = profiles.load(args.profiles)
  rates = {name: float(r) for name, r in parse_pairs(args.rate, "--rate").items()}
  missing = sorted(set(measured) - set(rates))
  if missing:
    raise UserError(f"give a --rate for every profiled model; missing {missing}")
  trace = workload.gamma_trace(
      {name: workload.GammaProcess(rate, args.cv) for name, rate in rates.items()},
      args.seconds,
      args.seed,
  )
  slo_s = {name: args.slo_scale * measured[name].single_device_latency() for name in rates}
  memory = int(args.device_memory_gb * 2**30)
  found = placement.search(args.devices, memory, measured, trace, slo_s)
  replication = placement.search(
      args.devices, memory, measured, trace, slo_s, configs=[ParallelConfig(1, 1)]
  )
  return "\n".join(
      [
          f"placement: '{placement_text(found.best.placement)}'",
          f"simulated SLO attainment: {found.best.outcome.attainment:.3f} "
          f"(replication alone: {replication.best.outcome.attainment:.3f}; "
          f"{len(trace)} requests, {found.simulations} placements scored in {found.seconds:.1f} s)",
      ]
  )


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tools.serving_plan", description=__doc__)
  commands = parser.add_subparsers(dest="command", required=True)
  p = commands.add_parser("profile")
  p.add_argument("--run", action="append", required=True, help="NAME=MODEL_DIR (repeatable)")
  p.add_argument("--shapes", default="1x1,2x1,1x2")
  p.add_argument("--batch_sizes", default="1,2,4")
  p.add_argument("--length", type=int, default=128)
  p.add_argument("--out", required=True)
  q = commands.add_parser("place")
  q.add_argument("--profiles", required=True)
  q.add_argument("--devices", type=int, required=True)
  q.add_argument("--device_memory_gb", type=float, required=True)
  q.add_argument("--rate", action="append", required=True, help="NAME=REQUESTS_PER_S")
  q.add_argument("--cv", type=float, default=1.0)
  q.add_argument("--slo_scale", type=float, default=5.0)
  q.add_argument("--seconds", type=float, default=600.0)
  q.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  try:
    print(profile(args) if args.command == "profile" else place(args), flush=True)
  except UserError as e:
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
