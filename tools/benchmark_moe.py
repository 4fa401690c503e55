"""Dense vs GLaM at equal activated FLOPs per token: one process, one table.

  python -m tools.benchmark_moe --gin_file=gin/models/glam_tiny.gin [--gin.NAME=VALUE ...] \
      [--experts 8 64] [--dispatch einsum dropless] [--batch_size 8] [--seq_len 128] \
      [--steps 20] [--warmup_steps 3] [--profile_steps 3] [--json_out FILE]

The gin files give a GLaM model (a TransformerConfig with a MoeConfig). From it:
  * dense: the same model with TransformerConfig.moe = None, every layer's FFN F wide
    (TransformerConfig.mlp_dim);
  * GLaM E=e, dispatch d: MoeConfig.num_experts = e, MoeConfig.dispatch = d, each expert
    F / top_k wide (MoeConfig.mlp_dim), so a token's top_k experts do one dense FFN's FLOPs:
    equal activated FLOPs per token (plus the router's D x E).
Each trains with the real Trainer (AdamW, constant learning rate, tools/benchmark_train.py's
synthetic batches); the models take turns step by step, so a change in the machine's load
falls on all alike.

Per model: total and activated parameters and model FLOPs per token (tools/benchmark_train.py:
PaLM's formula, expert kernels at top_k / E), median step time, tokens/s, step time over the
dense model's, the compiled step's memory (XLA's buffer assignment: arguments + outputs -
aliased + temporaries; per program, so comparable within one process, unlike the host's
RSS), and where the step's op time goes: a profile of --profile_steps steps, each op's time
given to the MoE piece whose named scope it runs under (router, dispatch, experts, combine:
model_zoo/moe/layer.py; forward and backward), the rest to the rest of the model
(tools/op_profile.py; op time per step, which on a CPU adds up over threads, so it can
exceed the step's wall time).
"""

import argparse
import sys
from typing import Any, Optional, Sequence

import gin
import jax
import numpy as np

from model_zoo import metrics as metrics_lib
from model_zoo.errors import ConfigError
from model_zoo.moe import layer as moe_layer
from model_zoo.moe.config import DISPATCHES
from tools import benchmark_common, benchmark_train, op_profile
from trainers import optimizers, partitioning
from trainers.trainer import Trainer

DENSE = "dense"
_configured_model = benchmark_common.model_configurable("benchmark_moe")


def variant_bindings(
    mlp_dim: int, top_k: int, experts: Sequence[int], dispatches: Sequence[str]
) -> dict[str, list[str]]:
  """Model name -> the gin bindings that make it from the GLaM config (module docstring)."""
  if mlp_dim % top_k:
    raise ConfigError(
        f"TransformerConfig.mlp_dim={mlp_dim} is not a multiple of MoeConfig.top_k={top_k}: "
        "each expert is mlp_dim / top_k wide, to match the dense model's FLOPs."
    )
  variants = {DENSE: ["TransformerConfig.moe = None"]}
  for e in experts:
    for dispatch in dispatches:
      variants[f"GLaM E={e} {dispatch}"] = [
          f"MoeConfig.num_experts = {e}",
          f"MoeConfig.dispatch = '{dispatch}'",
          f"MoeConfig.mlp_dim = {mlp_dim // top_k}",
      ]
  return variants


Variant = tuple[list[str], Any]  # (its gin bindings beside the base config's, its Model)


def load_variants(
    gin_files: Sequence[str],
    gin_search_paths: str,
    bindings: Sequence[str],
    experts: Sequence[int],
    dispatches: Sequence[str],
) -> dict[str, Variant]:
  """The dense model and the GLaM ones (module docstring) from a GLaM gin config, by name."""

  def load(extra: Sequence[str]):
    gin.clear_config()
    return benchmark_common.load_model(
        gin_files, gin_search_paths, [*bindings, *extra], _configured_model, "benchmark_moe"
    )

  cfg = load([]).module.config
  if getattr(cfg, "moe", None) is None:
    raise ConfigError(
        f"The gin files {list(gin_files)} give a model without mixture-of-experts layers; "
        "pass a GLaM config (TransformerConfig.moe bound), e.g. gin/models/glam_tiny.gin."
    )
  variants = variant_bindings(cfg.mlp_dim, cfg.moe.top_k, experts, dispatches)
  return {name: (extra, load(extra)) for name, extra in variants.items()}


def _load_models(args: argparse.Namespace, bindings: list[str]) -> dict[str, Any]:
  variants = load_variants(
      args.gin_file, args.gin_search_paths, bindings, args.experts, args.dispatch
  )
  return {name: model for name, (_, model) in variants.items()}


def _compiled_bytes(compiled) -> int:
  m = compiled.memory_analysis()
  return int(
      m.argument_size_in_bytes
      + m.output_size_in_bytes
      - m.alias_size_in_bytes
      + m.temp_size_in_bytes
  )


def run_compare(
    models: dict[str, Any],
    *,
    batch_size: int,
    seq_len: int,
    steps: int,
    warmup_steps: int,
    profile_steps: int,
    seed: int = 0,
) -> dict[str, Any]:
  """Trains every model on the same batches, steps alternating; returns a row per model."""
  partitioner = partitioning.Partitioner()
  partitioner.check_batch_size(batch_size, binding="--batch_size")
  schedule = optimizers.constant_schedule(benchmark_train.LEARNING_RATE)
  vocab = next(iter(models.values())).module.config.vocab_size
  rng = np.random.default_rng(seed)
  batches = [benchmark_train.synthetic_batch(rng, batch_size, seq_len, vocab) for _ in range(2)]
  shapes = {k: v.shape for k, v in batches[0].items()}
  trainers, states = {}, {}
  for name, model in models.items():
    trainers[name] = Trainer(model, partitioner, optimizers.adamw(schedule), schedule, seed=seed)
    states[name] = trainers[name].init_state(shapes)

  def stepper(name):
    def step(i):
      states[name], metrics = trainers[name].train_step(states[name], batches[i % 2])
      return (states[name], metrics), lambda: float(metrics_lib.values(metrics)["loss"])

    return step

  timed = benchmark_train.time_alternating(
      {name: stepper(name) for name in models}, steps, warmup_steps
  )
  rows = {}
  for name, model in models.items():
    cfg = model.module.config
    compiled = trainers[name].lower_train_step(states[name], batches[0]).compile()
    counts = benchmark_train.param_counts(
        states[name].params, cfg.tie_embeddings, benchmark_train.transformer_fraction(cfg)
    )
    first_step_s, times, final_loss = timed[name]
    median = benchmark_common.percentile(times, 50)
    rows[name] = {
        **counts,
        "model_flops_per_token": benchmark_train.model_flops_per_step(cfg, counts, 1, seq_len)
        / seq_len,
        "first_step_s": first_step_s,
        "step_time_median_s": median,
        "step_times_s": [float(t) for t in times],
        "tokens_per_second": batch_size * seq_len / median,
        "compiled_step_bytes": _compiled_bytes(compiled),
        "final_loss": final_loss,
    }
    if profile_steps:
      rows[name]["op_seconds"] = _profile(trainers[name], states, name, batches, profile_steps)
  dense_median = rows[DENSE]["step_time_median_s"]
  for row in rows.values():
    row["step_time_vs_dense"] = row["step_time_median_s"] / dense_median
  return {
      "batch_size": batch_size,
      "seq_len": seq_len,
      "steps": steps,
      "warmup_steps": warmup_steps,
      "profile_steps": profile_steps,
      "device_kind": jax.devices()[0].device_kind,
      "device_count": jax.device_count(),
      "jax_version": jax.__version__,
      "models": rows,
  }


def _profile(trainer: Trainer, states: dict, name: str, batches, steps: int) -> dict[str, float]:
  """Op seconds per step of each MoE piece and of the rest, over `steps` profiled steps."""
  hlo = trainer.lower_train_step(states[name], batches[0]).compile().as_text()

  def run():
    for i in range(steps):
      states[name], _ = trainer.train_step(states[name], batches[i % 2])
    jax.block_until_ready(states[name])

  seconds = op_profile.op_seconds_by_scope(run, hlo, moe_layer.SCOPES)
  return {scope: s / steps for scope, s in seconds.items()}


def format_table(r: dict[str, Any]) -> str:
  scopes = (*moe_layer.SCOPES, op_profile.REST)
  header = (
      "model",
      "params",
      "activated",
      "FLOPs/token",
      "step ms",
      "vs dense",
      "tokens/s",
      "step MiB",
      "op ms per step: " + " / ".join(s.removeprefix("moe_") for s in scopes),
  )
  lines = [
      f"{r['device_count']} x {r['device_kind']}, jax {r['jax_version']}; batch {r['batch_size']}"
      f" x {r['seq_len']}, {r['steps']} steps alternating (median), "
      f"{r['profile_steps']} profiled",
      " | ".join(header),
  ]
  for name, m in r["models"].items():
    pieces = "-"
    if "op_seconds" in m:
      pieces = " / ".join(f"{m['op_seconds'][s] * 1e3:.0f}" for s in scopes)
    lines.append(
        " | ".join(
            (
                name,
                f"{m['params_total'] / 1e6:.2f}M",
                f"{m['params_activated'] / 1e6:.2f}M",
                f"{m['model_flops_per_token'] / 1e6:.2f}M",
                f"{m['step_time_median_s'] * 1e3:.1f}",
                f"{m['step_time_vs_dense']:.2f}x",
                f"{m['tokens_per_second']:,.0f}",
                f"{m['compiled_step_bytes'] / 2**20:.1f}",
                pieces,
            )
        )
    )
  return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
  parser = benchmark_common.new_parser(
      prog="python -m tools.benchmark_moe",
      description="Dense vs GLaM training steps at equal activated FLOPs per token.",
      epilog="Gin overrides: --gin.NAME=VALUE (repeatable), applied to every model.",
  )
  parser.add_argument("--experts", type=int, nargs="+", default=[8, 64])
  parser.add_argument("--dispatch", nargs="+", default=list(DISPATCHES), choices=DISPATCHES)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--seq_len", type=int, default=128)
  parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
  parser.add_argument("--warmup_steps", type=int, default=3)
  parser.add_argument(
      "--profile_steps", type=int, default=3, help="profiled steps per GLaM model (0: none)"
  )
  parser.add_argument("--json_out", default=None, help="write the results here (default: stdout)")
  parser.add_argument("--seed", type=int, default=0)
  return parser


def _parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = _parser()
  args, bindings = benchmark_common.parse_known_args(parser, argv)
  benchmark_common.require_positive(parser, args, ("batch_size", "seq_len", "steps"))
  if min(args.experts) < 1:
    parser.error(f"--experts {args.experts}: each must be >= 1")
  if args.warmup_steps < 0 or args.profile_steps < 0:
    parser.error("--warmup_steps and --profile_steps must be >= 0")
  return args, bindings


def _run(args: argparse.Namespace, models: dict[str, Any]) -> dict[str, Any]:
  return run_compare(
      models,
      batch_size=args.batch_size,
      seq_len=args.seq_len,
      steps=args.steps,
      warmup_steps=args.warmup_steps,
      profile_steps=args.profile_steps,
      seed=args.seed,
  )


def main(argv: Optional[Sequence[str]] = None) -> int:
  return benchmark_common.run_main(
      argv, _parse_args, _load_models, _run, format_table, packages=("flax", "optax")
  )


if __name__ == "__main__":
  sys.exit(main())
