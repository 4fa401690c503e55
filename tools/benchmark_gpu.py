"""One GPU, one command: podzoo's ~1B decoder-only training step vs a plain Flax loop.

  python -m tools.benchmark_gpu [--json_out FILE]          # on one H100 / H200
  python -m tools.benchmark_gpu --tiny                      # on a CPU: tiny dims, f32, "xla"

Runs tools/benchmark_train.run_benchmark(..., baseline=True) on gin/models/decoder_only_1b.gin
at 8 x 2048 (bf16 activations, fp32 params, AdamW), podzoo's real Trainer.train_step with
the fused segment-aware attention (--attention_impl, default cuDNN) against the plain Flax
loop (tools/plain_flax_lm.py, cuDNN attention too), steps alternated, and prints tokens/s,
TFLOP/s per chip (PaLM 6N + 12LHQT) and MFU for both and their ratio; writes the JSON.

Memory at the defaults (remat "none", as the anchor): per model ~11 GiB of fp32 params and
AdamW state, and both models live in one process, plus one step's activations; the process
may use 95% of the GPU (XLA_PYTHON_CLIENT_MEM_FRACTION, unless set). If 80 GB runs out,
pass --remat_policy dots_no_batch (recomputes attention and activations in the backward).

Only the core dependencies are imported (jax, flax, optax, gin-config, numpy).
"""

import os

# Two models' states live in this process; JAX's default 75% of an 80 GB GPU is tight.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")

import argparse  # pylint: disable=wrong-import-position
import sys  # pylint: disable=wrong-import-position
from typing import Any, Optional, Sequence  # pylint: disable=wrong-import-position

import jax  # pylint: disable=wrong-import-position

from model_zoo.config import ATTENTION_IMPLS, REMAT_POLICIES  # pylint: disable=wrong-import-position
from model_zoo.errors import ConfigError  # pylint: disable=wrong-import-position
from tools import benchmark_common, benchmark_train  # pylint: disable=wrong-import-position

# A plain Flax loop of a 953M model at 8 x 2048 on one H100 (cuDNN attention, no remat).
ANCHORS = {
    "plain_flax_h100_tokens_per_second": 87_000,
    "plain_flax_h100_tflops_per_chip": 567,
    "maxtext_published_tflops_per_h100": 492,
    "target_speed_vs_plain": 1.10,
}
FULL = dict(gin_file="gin/models/decoder_only_1b.gin", batch_size=8, seq_len=2048, dtype="bfloat16")
TINY = dict(gin_file="gin/models/decoder_only_tiny.gin", batch_size=8, seq_len=64, dtype="float32")

_configured_model = benchmark_common.model_configurable("benchmark_gpu")


def _parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = argparse.ArgumentParser(
      prog="python -m tools.benchmark_gpu",
      allow_abbrev=False,
      description="podzoo's ~1B decoder-only train step vs a plain Flax loop on one GPU.",
      epilog="Further gin overrides: --gin.NAME=VALUE (repeatable).",
  )
  parser.add_argument(
      "--tiny",
      action="store_true",
      help="decoder_only_tiny.gin, batch 8 x 64, float32, attention xla: runs on a CPU",
  )
  parser.add_argument(
      "--attention_impl",
      choices=ATTENTION_IMPLS,
      default=None,
      help="podzoo's attention (default cudnn; xla with --tiny)",
  )
  parser.add_argument(
      "--remat_policy", choices=sorted(REMAT_POLICIES), default="none", help="podzoo's remat"
  )
  parser.add_argument("--batch_size", type=int, default=None, help="default 8")
  parser.add_argument("--seq_len", type=int, default=None, help="default 2048 (64 with --tiny)")
  parser.add_argument("--dtype", default=None, help="activations: bfloat16 (float32 with --tiny)")
  parser.add_argument("--steps", type=int, default=20, help="timed steps of each")
  parser.add_argument("--warmup_steps", type=int, default=3)
  parser.add_argument("--peak_tflops", type=float, default=None, help="default: by device kind")
  parser.add_argument("--json_out", default="benchmark_gpu.json", help="where the JSON goes")
  parser.add_argument("--seed", type=int, default=0)
  args, bindings = benchmark_common.parse_known_args(parser, argv)
  defaults = TINY if args.tiny else FULL
  for name in ("batch_size", "seq_len", "dtype"):
    if getattr(args, name) is None:
      setattr(args, name, defaults[name])
  if args.attention_impl is None:
    args.attention_impl = "xla" if args.tiny else "cudnn"
  benchmark_common.require_positive(parser, args, ("batch_size", "seq_len", "steps"))
  args.gin_file = [defaults["gin_file"]]
  args.gin_search_paths = ""
  return args, bindings


def _load_model(args: argparse.Namespace, bindings: list[str]):
  ours = [
      f"TransformerConfig.dtype = '{args.dtype}'",
      f"TransformerConfig.attention_impl = '{args.attention_impl}'",
      f"TransformerConfig.remat_policy = '{args.remat_policy}'",
  ]
  return benchmark_common.load_model(
      args.gin_file, "", ours + bindings, _configured_model, "benchmark_gpu"
  )


def _run(args: argparse.Namespace, model) -> dict[str, Any]:
  if args.attention_impl == "cudnn" and jax.default_backend() != "gpu":
    raise ConfigError(
        f"--attention_impl cudnn needs a CUDA GPU; JAX sees {jax.default_backend()} only. "
        "On a CPU run: python -m tools.benchmark_gpu --tiny (attention xla)."
    )
  r = benchmark_train.run_benchmark(
      model,
      batch_size=args.batch_size,
      seq_len=args.seq_len,
      steps=args.steps,
      warmup_steps=args.warmup_steps,
      peak_tflops=args.peak_tflops,
      seed=args.seed,
      baseline=True,
  )
  return summarize(r)


def summarize(r: dict[str, Any]) -> dict[str, Any]:
  """Both contenders side by side (rates by the same model FLOPs: podzoo's count), the
  ratio and the anchors, from run_benchmark's results."""
  tokens = r["tokens_per_step"]
  return {
      "podzoo": {
          "step_time_median_s": r["step_time_median_s"],
          "tokens_per_second": r["tokens_per_second"],
          "tflops_per_chip": r["achieved_tflops_per_device"],
          "mfu": r["mfu"],
      },
      "plain": {
          "step_time_median_s": r["baseline_step_time_median_s"],
          "tokens_per_second": tokens / r["baseline_step_time_median_s"],
          "tflops_per_chip": r["baseline_achieved_tflops_per_device"],
          "mfu": r["baseline_mfu"],
      },
      "speed_vs_plain": r["speed_vs_baseline"],
      "anchors": ANCHORS,
      "benchmark_train": r,
  }


def format_table(s: dict[str, Any]) -> str:
  r = s["benchmark_train"]
  mfu = lambda side: "n/a" if side["mfu"] is None else f"{100 * side['mfu']:.1f}%"
  lines = [
      f"{r['device_count']} x {r['device_kind']} ({r['platform']}), jax {r['jax_version']}; "
      f"{r['params_total'] / 1e6:,.0f}M params, {r['batch_size']} x {r['seq_len']}, "
      f"{r['dtype']} / {r['param_dtype']} params, attention {r['attention_impl']}, "
      f"remat {r['remat_policy']}",
      f"{'':8} {'step ms':>10} {'tokens/s':>12} {'TFLOP/s/chip':>13} {'MFU':>7}",
  ]
  for name in ("podzoo", "plain"):
    side = s[name]
    lines.append(
        f"{name:8} {side['step_time_median_s'] * 1e3:10.2f} {side['tokens_per_second']:12,.0f} "
        f"{side['tflops_per_chip']:13.2f} {mfu(side):>7}"
    )
  a = s["anchors"]
  lines += [
      f"podzoo / plain: {s['speed_vs_plain']:.3f}x (target >= {a['target_speed_vs_plain']}x)",
      f"anchors (one H100, 953M, 8 x 2048): plain Flax {a['plain_flax_h100_tokens_per_second']:,} "
      f"tokens/s, {a['plain_flax_h100_tflops_per_chip']} TFLOP/s; MaxText "
      f"~{a['maxtext_published_tflops_per_h100']} TFLOP/s per chip",
  ]
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  return benchmark_common.run_main(
      argv, _parse_args, _load_model, _run, format_table, packages=("flax", "optax")
  )


if __name__ == "__main__":
  sys.exit(main())
