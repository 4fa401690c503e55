"""Experiment: AlpaServe's placement (model parallelism for statistical multiplexing) against
replication only, by SLO attainment.

  python -m tools.serving_experiment [--devices 64] [--models 32] [--requests 4000] \
      [--json_out serving_experiment.json] [--plot serving_experiment.png]

In the simulator (trainers/serving), at cluster scale: --models models on --devices devices,
each model's weights 60% of a device (a device holds one replica whole, or parts of several
when split into stages); every model gets Gamma arrivals at the same rate. Three sweeps, each
around the defaults (total rate 0.5 requests per device per single-device latency, CV 4, SLO
5x the single-device latency): SLO attainment against the total rate, against the CV and
against the SLO scale, for
- replication: one-device groups, replicas placed greedily (the same search, 1x1 only);
- AlpaServe: the search over group sizes and (stages x tensor) shapes.
Time is in units of one request's single-device latency, so the figures hold for any model
whose profile has these shapes. The profiles follow a stated cost model (`cluster_profile`):
pipeline stages split a request's work evenly and add 2% of it per stage boundary; tensor
shards split it and add 10% per doubling (communication); memory divides evenly.

Prints a table, writes the JSON and a PNG of the three sweeps, and says how fast the
simulator scored placements.
"""

import argparse
import math
import sys
import time
from typing import Any, Optional, Sequence

from tools import benchmark_common
from trainers.serving import placement, workload
from trainers.serving.profiles import ConfigProfile, ModelProfile, ParallelConfig

STAGE_OVERHEAD = 0.02  # of the single-device latency, per stage boundary
TENSOR_OVERHEAD = 0.10  # per doubling of the tensor shards
MODEL_MEMORY = 0.6  # of a device
DEVICE_MEMORY = 1 << 30
DEFAULTS = {"rate": 0.5, "cv": 4.0, "slo_scale": 5.0}
SWEEPS = {
    "rate": [0.2, 0.35, 0.5, 0.65, 0.8],  # requests per device per latency unit, all models
    "cv": [1.0, 2.0, 4.0, 6.0, 8.0],
    "slo_scale": [2.0, 3.0, 5.0, 10.0, 20.0],
}
METHODS = {"replication": [ParallelConfig(1, 1)], "alpaserve": None}


def shapes(max_devices: int) -> list[ParallelConfig]:
  powers = [2**i for i in range(int(math.log2(max_devices)) + 1)]
  return [ParallelConfig(s, t) for s in powers for t in powers if s * t <= max_devices]


def cluster_profile(name: str, max_devices: int = 8) -> ModelProfile:
  """A model of single-device latency 1 and MODEL_MEMORY of a device, on every shape up to
  `max_devices` devices, by the cost model of the module docstring."""
  configs = {}
  for config in shapes(max_devices):
    work = 1.0 / (config.stages * config.tensor)
    work *= 1 + TENSOR_OVERHEAD * math.log2(config.tensor)
    boundary = STAGE_OVERHEAD if config.stages > 1 else 0.0
    stage = tuple(work + boundary for _ in range(config.stages))
    memory = int(MODEL_MEMORY * DEVICE_MEMORY / config.devices)
    configs[config] = ConfigProfile(config, {1: stage}, memory)
  return ModelProfile(name, configs)


def point(args: argparse.Namespace, rate: float, cv: float, slo_scale: float) -> dict[str, Any]:
  """Both methods' best placement and attainment at one setting."""
  names = [f"m{i}" for i in range(args.models)]
  profiles = {n: cluster_profile(n, args.max_group) for n in names}
  per_model = rate * args.devices / args.models
  duration = args.requests / (per_model * args.models)
  trace = workload.gamma_trace(
      {n: workload.GammaProcess(per_model, cv) for n in names}, duration, seed=args.seed
  )
  out = {}
  for method, configs in METHODS.items():
    result = placement.search(
        args.devices, DEVICE_MEMORY, profiles, trace, slo_scale, configs=configs
    )
    out[method] = {
        "attainment": result.best.outcome.attainment,
        "placement": sorted({str(g.config) for g in result.best.placement.groups}),
        "groups": len(result.best.placement.groups),
        "replicas": sum(len(g.models) for g in result.best.placement.groups),
        "simulations": result.simulations,
        "seconds": result.seconds,
        "requests": len(trace),
    }
  return out


def run(args: argparse.Namespace) -> dict[str, Any]:
  sweeps = {}
  for name, values in SWEEPS.items():
    sweeps[name] = []
    for value in values:
      setting = {**DEFAULTS, name: value}
      sweeps[name].append({name: value, **point(args, **setting)})
      print(
          f"{name}={value}: "
          + ", ".join(
              f"{m} {r['attainment']:.3f}" for m, r in sweeps[name][-1].items() if m in METHODS
          ),
          flush=True,
      )
  simulations = sum(p[m]["simulations"] for s in sweeps.values() for p in s for m in METHODS)
  seconds = sum(p[m]["seconds"] for s in sweeps.values() for p in s for m in METHODS)
  return {
      "settings": {
          **vars(args),
          "defaults": DEFAULTS,
          "model_memory": MODEL_MEMORY,
          "stage_overhead": STAGE_OVERHEAD,
          "tensor_overhead": TENSOR_OVERHEAD,
      },
      "sweeps": sweeps,
      "simulator": {
          "simulations": simulations,
          "seconds": seconds,
          "placements_per_s": simulations / seconds,
          "requests_per_s": simulations * args.requests / seconds,
      },
  }


def format_table(r: dict[str, Any]) -> str:
  lines = ["sweep | value | replication | alpaserve | alpaserve groups"]
  for name, points in r["sweeps"].items():
    for p in points:
      lines.append(
          f"{name} | {p[name]:g} | {p['replication']['attainment']:.3f} | "
          f"{p['alpaserve']['attainment']:.3f} | {'+'.join(p['alpaserve']['placement'])}"
          f" x{p['alpaserve']['groups']}"
      )
  s = r["simulator"]
  lines.append(
      f"simulator: {s['simulations']} placements scored in {s['seconds']:.0f} s "
      f"({s['placements_per_s']:.0f}/s, {s['requests_per_s'] / 1e6:.2f}M requests/s)"
  )
  return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top  (the [experiments] extra)

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  labels = {
      "rate": "total rate (requests / device / latency)",
      "cv": "CV of arrivals",
      "slo_scale": "SLO (x single-device latency)",
  }
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
  for ax, (name, points) in zip(axes, r["sweeps"].items()):
    for method, style in (("replication", "s--"), ("alpaserve", "o-")):
      ax.plot(
          [p[name] for p in points], [p[method]["attainment"] for p in points], style, label=method
      )
    ax.set_xlabel(labels[name])
    ax.set_ylabel("SLO attainment")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
  axes[0].legend()
  settings = r["settings"]
  fig.suptitle(
      f"Simulated: {settings['models']} models on {settings['devices']} devices "
      "(replication vs AlpaServe placement)"
  )
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  print(f"wrote {path}", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tools.serving_experiment", description=__doc__)
  parser.add_argument("--devices", type=int, default=64)
  parser.add_argument("--models", type=int, default=32)
  parser.add_argument("--max_group", type=int, default=8, help="largest group (devices)")
  parser.add_argument("--requests", type=int, default=4000, help="per simulated trace")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json_out", default="serving_experiment.json")
  parser.add_argument("--plot", default="serving_experiment.png")
  args = parser.parse_args(argv)
  benchmark_common.require_positive(parser, args, ("devices", "models", "max_group", "requests"))
  start = time.perf_counter()
  results = run(args)
  results["seconds"] = time.perf_counter() - start
  benchmark_common.emit(results, format_table(results), args.json_out)
  plot(results, args.plot)
  return 0


if __name__ == "__main__":
  sys.exit(main())
