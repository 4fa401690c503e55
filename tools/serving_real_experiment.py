"""Experiment: the simulator's prediction beside the real server's measurement, for
replication and for AlpaServe's placement, on this machine's devices.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tools.serving_real_experiment \
      [--models 4] [--gin_file gin/models/decoder_only_small.gin] [--length 128] \
      [--rate 0.1] [--cv 4] [--slo_scale 5] [--seconds 60] [--json_out F] [--plot F]

1. --models zoo models (the --gin_file config, its own random weights each, a byte
   vocabulary) are profiled (trainers/serving/profiler.py) on one device and in 2 and 4
   pipeline stages, scoring one row of --length tokens.
2. A device holds one model (its memory budget is set to 1.5 models' weights), as in
   tools/serving_experiment.py.
3. A Gamma trace (--rate requests per device per single-device latency in all, --cv) of
   --seconds; the SLO is --slo_scale x each model's single-device latency.
4. For each method the placement search picks a placement and the simulator predicts its
   SLO attainment; then the real server (trainers/serving engine and HTTP app on uvicorn,
   on the loopback interface, batch 1) serves it while tools/serve_load, in a process of
   its own, replays the trace, and the measured attainment is the share of requests answered 200 within the SLO.
Prints a table, writes the JSON and a PNG. A request's HTTP round trip (a few ms here) is
not in the profiles, so the model must be large enough to dominate it (decoder_only_small:
~0.1 s a request on one CPU device). Fake CPU devices share the machine's cores, and XLA
spreads one computation over all of them, so 8 fake devices on 2 cores serve far less than
the simulator's 8 devices; for a comparison that means something on a CPU, give each fake
device a core of its own:
  XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false \
      intra_op_parallelism_threads=1" python -m tools.serving_real_experiment --models 2
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Optional, Sequence

import jax
import numpy as np

from tools import benchmark_common, serve_load
from trainers.serving import engine as engine_lib
from trainers.serving import placement, profiler, workload
from trainers.serving.http_app import create_app
from trainers.serving.profiles import ParallelConfig
from trainers.serving.simulator import simulate

METHODS = {"replication": [ParallelConfig(1, 1)], "alpaserve": None}
experiment_model = benchmark_common.model_configurable("serving_real_experiment")


def build_models(args: argparse.Namespace) -> list[Any]:
  """The served models: the gin file's Model, each with weights of its own seed."""
  import seqio  # pylint: disable=g-import-not-at-top  (a byte vocabulary for the text API)

  from trainers.infer_examples import Codec  # pylint: disable=g-import-not-at-top
  from trainers.serving.replica import ServedModel  # pylint: disable=g-import-not-at-top

  vocab = seqio.ByteVocabulary()
  model = benchmark_common.load_model(
      args.gin_file,
      "",
      ["TransformerConfig.vocab_size = 264"],
      experiment_model,
      "serving_real_experiment",
  )
  tokens = np.ones((1, args.length), np.int32)
  batch = {"decoder_input_tokens": tokens, "decoder_target_tokens": tokens}
  codec = Codec(vocab, vocab, prompt_eos=False, target_eos=True)
  return [
      ServedModel(
          f"m{i}",
          model,
          jax.device_get(model.init(jax.random.PRNGKey(i), batch)),
          codec,
          args.length,
      )
      for i in range(args.models)
  ]


def replay_elsewhere(url: str, trace: workload.Trace, directory: str) -> list[serve_load.Answer]:
  """tools/serve_load in a process of its own, so that the clients do not share this
  process's interpreter (and its lock) with the server; its answers."""
  trace_path = os.path.join(directory, "trace.jsonl")
  answers_path = os.path.join(directory, "answers.jsonl")
  workload.save(trace, trace_path)
  subprocess.run(
      [
          sys.executable,
          "-m",
          "tools.serve_load",
          "--url",
          url,
          "--trace",
          trace_path,
          "--kind",
          "score",
          "--json_out",
          os.path.join(directory, "load.json"),
          "--answers_out",
          answers_path,
      ],
      check=True,
      stdout=subprocess.DEVNULL,
      env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""},
  )
  with open(answers_path, encoding="utf-8") as f:
    return [serve_load.Answer(**json.loads(line)) for line in f]


def measure(served, chosen, profiles, trace, slo_s: dict[str, float]) -> dict[str, Any]:
  """Serves `chosen` for real and replays `trace` against it; the attainment and latencies."""
  placed = {name for group in chosen.groups for name in group.models}
  engine = engine_lib.Engine(  # a model the search left out is not served (404: unserved)
      [dataclasses.replace(m, slo_s=slo_s[m.name]) for m in served if m.name in placed],
      chosen,
      jax.devices(),
      max_batch=1,
      max_queue=64,
      profiles=profiles,
  )
  engine.warm_up(generate=False)  # every replica compiled before the clock starts
  try:
    with serve_load.local_server(create_app(engine)) as url, tempfile.TemporaryDirectory() as d:
      answers = replay_elsewhere(url, trace, d)
  finally:
    engine.close()
  in_slo = [a.status == 200 and a.latency_s <= slo_s[a.model] for a in answers]
  return {"attainment": float(np.mean(in_slo)), **serve_load.summarize(answers)["all"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
  served = build_models(args)
  configs = [ParallelConfig(s, 1) for s in (1, 2, 4) if s <= len(jax.devices())]
  profiles = {
      m.name: profiler.profile_model(
          m.name, m.model.module.config, m.params, configs, [1], args.length, jax.devices()
      )
      for m in served
  }
  latency = {name: p.single_device_latency() for name, p in profiles.items()}
  slo_s = {name: args.slo_scale * s for name, s in latency.items()}
  memory = int(1.5 * max(p.on(ParallelConfig(1, 1)).memory_per_device for p in profiles.values()))
  unit = float(np.mean(list(latency.values())))
  per_model = args.rate * len(jax.devices()) / unit / args.models
  trace = workload.gamma_trace(
      {m.name: workload.GammaProcess(per_model, args.cv) for m in served}, args.seconds, args.seed
  )
  results = {
      "settings": vars(args),
      "devices": len(jax.devices()),
      "single_device_latency_s": latency,
      "requests": len(trace),
      "methods": {},
  }
  for method, shapes in METHODS.items():
    found = placement.search(len(jax.devices()), memory, profiles, trace, slo_s, configs=shapes)
    chosen = found.best.placement
    predicted = simulate(chosen, profiles, trace, slo_s)
    measured = measure(served, chosen, profiles, trace, slo_s)
    results["methods"][method] = {
        "placement": str(chosen),
        "predicted": predicted.attainment,
        "predicted_p99_s": predicted.latency_percentiles()["p99"],
        "measured": measured,
    }
    print(
        f"{method}: {chosen}: predicted {predicted.attainment:.3f}, "
        f"measured {measured['attainment']:.3f}",
        flush=True,
    )
  return results


def format_table(r: dict[str, Any]) -> str:
  lines = [
      f"{r['settings']['models']} models on {r['devices']} devices, {r['requests']} requests; "
      f"single-device latency {np.mean(list(r['single_device_latency_s'].values())) * 1e3:.1f} ms",
      "method | placement | predicted | measured | lost | served p99 (s)",
  ]
  for method, m in r["methods"].items():
    p99 = m["measured"]["p99_s"]
    lines.append(
        f"{method} | {m['placement']} | {m['predicted']:.3f} | {m['measured']['attainment']:.3f}"
        f" | {m['measured']['lost']} | {'-' if p99 is None else f'{p99:.3f}'}"
    )
  return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top  (the [experiments] extra)

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  methods = list(r["methods"])
  x = np.arange(len(methods))
  fig, ax = plt.subplots(figsize=(6, 3.8))
  ax.bar(x - 0.2, [r["methods"][m]["predicted"] for m in methods], 0.4, label="simulator")
  ax.bar(
      x + 0.2,
      [r["methods"][m]["measured"]["attainment"] for m in methods],
      0.4,
      label="real server",
  )
  ax.set_xticks(x, methods)
  ax.set_ylabel("SLO attainment")
  ax.set_ylim(0, 1.02)
  ax.legend()
  ax.set_title(f"{r['settings']['models']} models, {r['devices']} devices (this machine)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  print(f"wrote {path}", flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m tools.serving_real_experiment", description=__doc__
  )
  parser.add_argument("--models", type=int, default=4)
  parser.add_argument("--gin_file", action="append", default=None)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--rate", type=float, default=0.1)
  parser.add_argument("--cv", type=float, default=4.0)
  parser.add_argument("--slo_scale", type=float, default=5.0)
  parser.add_argument("--seconds", type=float, default=60.0)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json_out", default="serving_real_experiment.json")
  parser.add_argument("--plot", default="serving_real_experiment.png")
  args = parser.parse_args(argv)
  args.gin_file = args.gin_file or ["gin/models/decoder_only_small.gin"]
  benchmark_common.require_positive(parser, args, ("models", "length"))
  results = run(args)
  benchmark_common.emit(results, format_table(results), args.json_out)
  plot(results, args.plot)
  return 0


if __name__ == "__main__":
  sys.exit(main())
