"""`python -m tools.benchmark_spae`: how fast a SPAE model encodes images to tokens, decodes
tokens to images and trains, on this machine.

  python -m tools.benchmark_spae --gin_file=gin/models/spae.gin [--gin.NAME=VALUE ...] \
      [--batch_size 32] [--repeats 5] [--steps 10] [--seed 0] [--json_out FILE]

The model comes from gin (the MODEL macro), freshly initialised (--seed); images are uniform
random in [0, 1] and every image has a 2-piece word. Timed, each as one compiled program and
`jax.block_until_ready`, median over --repeats calls after one untimed (compiling) call:
  * encode: `jax.jit(model.encode)` of a batch: images -> every pyramid layer's LM ids;
  * decode: `jax.jit(model.decode)` of those ids at full depth: ids -> images;
  * train step: the real `Trainer.train_step` (AdamW at 1e-4, the codebook frozen by
    `trainable_only` as gin/runs/spae.gin freezes it) on one fixed batch, median over
    --steps steps after one untimed step; images/s = batch / median step.
Only the core is used (no TensorFlow or SeqIO): it runs on an accelerator machine too.
"""

import argparse
import statistics
import sys
import time
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
import optax

from tools import benchmark_common
from trainers import optimizers, partitioning, trainer

_CONFIGURABLE = benchmark_common.model_configurable("benchmark_spae")


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
  jax.block_until_ready(fn())  # compiles
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def measure(args: argparse.Namespace, model) -> dict[str, Any]:
  cfg = model.config
  rng = np.random.default_rng(args.seed)
  side = cfg.image_side
  batch = {
      "image": rng.random((args.batch_size, side, side, cfg.image_channels), np.float32),
      "semantic_tokens": rng.integers(cfg.first_code_id, cfg.code_stop, (args.batch_size, 2)),
  }
  batch["semantic_tokens"] = batch["semantic_tokens"].astype(np.int32)
  schedule = optimizers.constant_schedule(1e-4)
  tx = optimizers.trainable_only(optax.adamw(schedule), frozen_patterns=["^codebook/embedding$"])
  tr = trainer.Trainer(model, partitioning.Partitioner(), tx, schedule, seed=args.seed)
  state = tr.init_state({k: v.shape for k, v in batch.items()})
  params = state.params
  encode, decode = jax.jit(model.encode), jax.jit(model.decode)
  ids = encode(params, batch["image"])
  encode_s = _median_seconds(lambda: encode(params, batch["image"]), args.repeats)
  decode_s = _median_seconds(lambda: decode(params, ids), args.repeats)
  state, _ = tr.train_step(state, batch)  # compiles
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    state, metrics = tr.train_step(state, batch)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - start)
  step_s = statistics.median(times)
  num_params = sum(int(np.size(x)) for x in jax.tree.leaves(params))
  return {
      "device": jax.devices()[0].device_kind,
      "batch_size": args.batch_size,
      "image_side": side,
      "tokens_per_image": model.pyramid.num_tokens,
      "parameters": num_params,
      "codebook_parameters": int(np.size(params["codebook"]["embedding"])),
      "encode_images_per_s": args.batch_size / encode_s,
      "decode_images_per_s": args.batch_size / decode_s,
      "train_step_ms": 1000 * step_s,
      "train_step_p90_ms": 1000 * benchmark_common.percentile(times, 90),
      "train_images_per_s": args.batch_size / step_s,
  }


def format_table(results: dict[str, Any]) -> str:
  return "\n".join(
      [
          f"SPAE on {results['device']}: {results['image_side']}x{results['image_side']} images, "
          f"{results['tokens_per_image']} tokens each, {results['parameters']:,} parameters "
          f"({results['codebook_parameters']:,} the frozen codebook), batch "
          f"{results['batch_size']}",
          f"{'encode':<12} {results['encode_images_per_s']:>10,.1f} images/s",
          f"{'decode':<12} {results['decode_images_per_s']:>10,.1f} images/s",
          f"{'train step':<12} {results['train_step_ms']:>10,.1f} ms median "
          f"(p90 {results['train_step_p90_ms']:,.1f}), "
          f"{results['train_images_per_s']:,.1f} images/s",
      ]
  )


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = benchmark_common.new_parser("python -m tools.benchmark_spae", __doc__, "")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json_out", default=None)
  args, bindings = benchmark_common.parse_known_args(parser, argv)
  benchmark_common.require_positive(parser, args, ("batch_size", "repeats", "steps"))
  return args, bindings


def _load(args: argparse.Namespace, bindings: list[str]):
  return benchmark_common.load_model(
      args.gin_file, args.gin_search_paths, bindings, _CONFIGURABLE, "benchmark_spae"
  )


def main(argv: Optional[Sequence[str]] = None) -> int:
  return benchmark_common.run_main(argv, _parse, _load, measure, format_table, packages=("jax",))


if __name__ == "__main__":
  sys.exit(main())
