"""Training-step benchmark: compile time, step time, tokens/s, model FLOPs, MFU, peak memory.

  python -m tools.benchmark_train --gin_file=gin/models/decoder_only_tiny.gin \
      [--gin_file=...] [--gin.NAME=VALUE ...] --batch_size 8 --seq_len 128 \
      --steps 20 --warmup_steps 3 [--num_microbatches 1] [--encoder_seq_len N] \
      [--json_out FILE] [--peak_tflops X] [--baseline]

e.g. on a GPU: --gin_file=gin/models/decoder_only_1b.gin --batch_size 8 --seq_len 2048
--gin.TransformerConfig.attention_impl="'cudnn'"; on a CPU add
--gin.TransformerConfig.dtype="'float32'" (CPUs have no fast bf16).

Only the core is used (jax, flax, optax, gin-config; no TensorFlow or SeqIO), so this runs
on an accelerator machine without the [tasks] extra. The model comes from gin (the model
config files and overrides; the macro MODEL names it), the mesh from `Partitioner` (default
mesh_shape (-1, 1, 1, 1), i.e. pure data parallelism; override with
--gin.Partitioner.mesh_shape="(...)"), and the step is the real `Trainer.train_step` with
AdamW (trainers.optimizers.adamw; b1, b2, eps, weight decay from gin if bound) at a
constant learning rate of 1e-4, on synthetic uniform random token batches (all loss
weights 1). Encoder-decoder models (FEATURE_CONVERTER_CLS EncDecFeatureConverter) also get
`encoder_input_tokens` of length --encoder_seq_len (default --seq_len).

Measured:
  * first step: the first `train_step` call: tracing, XLA compilation and one execution;
    `compile_s` = first step - median step is the compile (+ trace) estimate. State
    initialisation (its own compiled program) is reported separately as `init_s`.
  * step time: --warmup_steps untimed steps after the first, then --steps timed steps,
    each ended by `jax.block_until_ready` on the new state and the metrics (so steps do
    not overlap through async dispatch); median and p90 (linear interpolation).
  * tokens/s = batch_size * seq_len / median step time (decoder/target tokens).
  * peak memory: max over local devices of memory_stats()["peak_bytes_in_use"] where the
    backend reports it (GPU, TPU); otherwise the process's maximum resident set size
    (resource.getrusage), labelled "host RSS".

Model FLOPs (PaLM, Chowdhery et al. 2022, appendix B; no rematerialisation counted):

    training FLOPs per token = 6 * N + 12 * L * H * Q * T

  N: parameters that do a multiply-add per token: all parameters except the input
     embedding table when embeddings are untied; a tied embedding is counted once, as
     the output projection. (Norm scales are included; they are negligible.) In
     mixture-of-experts layers a token uses top_k of the E experts: the expert kernels
     count at k/E (the activated parameters), the router in full.
  L: layers, H: query heads, Q: head_dim, T: sequence length. The attention term counts
     the full T x T score and value matmuls (causal masking does not halve it), forward
     and backward (x3), for query heads (MQA/GQA do not shrink it).
  FLOPs per step = batch_size * T * (6 N + 12 L H Q T).
  Encoder-decoder: per encoder token 6 N_enc + 12 L_enc H Q T_enc, per decoder token
     6 N_dec + 12 L_dec H Q (T_dec + T_enc) (self- plus cross-attention), where N_enc is
     the encoder stack and its final norm and N_dec is the rest (decoder stack, output head).
  Achieved TFLOP/s per device = FLOPs per step / median step time / device count / 1e12;
  MFU = achieved / peak, peak from --peak_tflops or a table of dense bf16 peaks by
  jax.devices()[0].device_kind (H100 SXM 989, H100 PCIe 756, H200 989, A100 312,
  TPU v4 275, v5e 197, v5p 459); unknown devices (CPU) print MFU as "n/a". The peak is
  the bf16 one whatever the activation dtype.

--baseline (decoder-only models): the same steps are also run by a plain Flax linen + optax
loop of the same architecture, dims and activation dtype (tools/plain_flax_lm.py: what a user
would write by hand, without the framework), on the same host (numpy) batches with AdamW of
the same hyper-parameters, each step paying its own transfer to the device as podzoo's does. The two alternate step by step (podzoo, plain, podzoo, ...), so a change
in the machine's load falls on both; each gets its first step and warm-up steps too.
Reported: the plain loop's first step, compile estimate, median step time, TFLOP/s per device
and MFU (by podzoo's model FLOPs: the same model), and speed_vs_baseline = plain median /
podzoo median (> 1: podzoo's step is faster).

The results go to --json_out as JSON (numbers and config), or to stdout after the table
when --json_out is not given.
"""

import argparse
import functools
import os
import sys
import time
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from model_zoo import dense, feature_converters
from model_zoo import metrics as metrics_lib
from model_zoo.config import TransformerConfig
from model_zoo.errors import ConfigError
from model_zoo.moe import layer as moe_layer
from tools import benchmark_common, plain_flax_lm
from tools.benchmark_common import peak_memory
from trainers import optimizers, partitioning
from trainers.trainer import Trainer

LEARNING_RATE = 1e-4

# (substring of the lower-cased device_kind, dense bf16 peak TFLOP/s per device); first match.
PEAK_TFLOPS = (
    ("h100 pcie", 756.0),
    ("h100", 989.0),  # SXM
    ("h200", 989.0),
    ("a100", 312.0),
    ("tpu v4", 275.0),
    ("tpu v5 lite", 197.0),
    ("tpu v5e", 197.0),
    ("tpu v5p", 459.0),
    ("tpu v5", 459.0),  # v5p reports itself as "TPU v5"
)


_configured_model = benchmark_common.model_configurable("benchmark_train")


def peak_tflops_for(device_kind: str) -> Optional[float]:
  """Dense bf16 peak TFLOP/s of one device of this kind, or None if unknown (CPU)."""
  kind = device_kind.lower()
  for pattern, peak in PEAK_TFLOPS:
    if pattern in kind:
      return peak
  return None


# --- FLOPs -----------------------------------------------------------------------------------
def _path_keys(path) -> tuple[str, ...]:
  return tuple(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)


def param_counts(
    params: Any,
    tie_embeddings: bool,
    activated_fraction: Optional[Callable[[tuple[str, ...]], float]] = None,
) -> dict:
  """Total parameters; the input embedding table; the activated ones; and N of the FLOP
  formula (activated, enc/dec split).

  With mixture-of-experts layers, `activated_fraction` (e.g. model_zoo.dense's for a
  TransformerConfig) gives the share of each parameter a token goes through by its path keys:
  top-k of E of a MoE layer's expert kernels, the router in full.
  """
  total = embedding = experts = 0
  activated = activated_encoder = 0.0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys, size = _path_keys(path), int(np.prod(leaf.shape))
    total += size
    is_expert = moe_layer.MODULE_NAME in keys and "router" not in keys
    experts += size if is_expert else 0
    active = size * activated_fraction(keys) if activated_fraction else size
    activated += active
    if keys[0] == "token_embedder":
      embedding += size
    elif keys[0] in ("encoder", "encoder_norm"):
      activated_encoder += active
  flops_params = round(activated if tie_embeddings else activated - embedding)
  return {
      "params_total": total,
      "params_input_embedding": embedding,
      "params_experts": experts,
      "params_activated": round(activated),
      "params_flops": flops_params,
      "params_flops_encoder": round(activated_encoder),
      "params_flops_decoder": flops_params - round(activated_encoder),
  }


def transformer_fraction(cfg: Any) -> Optional[Callable[[tuple[str, ...]], float]]:
  """param_counts' activated_fraction for a zoo transformer's config (None for another)."""
  if not isinstance(cfg, TransformerConfig):
    return None
  return functools.partial(dense.activated_fraction, cfg)


def model_flops_per_step(
    cfg,
    counts: dict[str, int],
    batch_size: int,
    seq_len: int,
    encoder_seq_len: Optional[int] = None,
) -> float:
  """PaLM training FLOPs of one step (see the module docstring)."""
  hq = cfg.num_heads * cfg.head_dim
  if encoder_seq_len is None:  # decoder-only
    per_token = 6 * counts["params_flops"] + 12 * cfg.num_attention_layers * hq * seq_len
    return float(batch_size * seq_len * per_token)
  encoder = 6 * counts["params_flops_encoder"] + 12 * cfg.num_encoder_layers * hq * encoder_seq_len
  decoder = 6 * counts["params_flops_decoder"] + 12 * cfg.num_layers * hq * (
      seq_len + encoder_seq_len
  )
  return float(batch_size * (encoder_seq_len * encoder + seq_len * decoder))


# --- measurement helpers ---------------------------------------------------------------------
def synthetic_batch(
    rng: np.random.Generator,
    rows: int,
    seq_len: int,
    vocab_size: int,
    encoder_seq_len: Optional[int] = None,
) -> dict[str, np.ndarray]:
  """Uniform random tokens in [2, vocab) (0 is padding, 1 EOS); inputs are targets shifted right."""
  low = 2 if vocab_size > 2 else 0
  targets = rng.integers(low, vocab_size, size=(rows, seq_len), dtype=np.int32)
  inputs = np.concatenate([np.zeros((rows, 1), np.int32), targets[:, :-1]], axis=1)
  batch = {
      "decoder_input_tokens": inputs,
      "decoder_target_tokens": targets,
      "decoder_loss_weights": np.ones((rows, seq_len), np.int32),
  }
  if encoder_seq_len is not None:
    batch["encoder_input_tokens"] = rng.integers(
        low, vocab_size, size=(rows, encoder_seq_len), dtype=np.int32
    )
  return batch


_percentile = benchmark_common.percentile


# --- the benchmark ---------------------------------------------------------------------------
def run_benchmark(
    model,
    *,
    batch_size: int,
    seq_len: int,
    steps: int,
    warmup_steps: int,
    num_microbatches: int = 1,
    encoder_seq_len: Optional[int] = None,
    peak_tflops: Optional[float] = None,
    seed: int = 0,
    baseline: bool = False,
) -> dict[str, Any]:
  """Builds Partitioner + Trainer (AdamW, constant LR) around `model`, times steps (alternating
  with the plain Flax loop's when `baseline`), returns results."""
  cfg = model.module.config
  encdec = model.FEATURE_CONVERTER_CLS is feature_converters.EncDecFeatureConverter
  if encdec:
    encoder_seq_len = encoder_seq_len or seq_len
  elif encoder_seq_len is not None:
    raise ConfigError(
        f"--encoder_seq_len={encoder_seq_len} was given but the model is "
        f"{type(model).__name__} (feature converter {model.FEATURE_CONVERTER_CLS.name!r}), "
        "which has no encoder."
    )
  if baseline and encdec:
    raise ConfigError(
        f"--baseline times a plain decoder-only Flax loop; the model is {type(model).__name__}, "
        "an encoder-decoder. Drop --baseline or pass a decoder-only model's gin file."
    )
  if batch_size % num_microbatches:
    raise ConfigError(
        f"--batch_size={batch_size} is not divisible by --num_microbatches=" f"{num_microbatches}."
    )
  if batch_size % jax.process_count():
    raise ConfigError(
        f"--batch_size={batch_size} is not divisible by the {jax.process_count()} " "processes."
    )

  partitioner = partitioning.Partitioner()
  partitioner.check_batch_size(batch_size, binding="--batch_size")
  schedule = optimizers.constant_schedule(LEARNING_RATE)
  trainer = Trainer(
      model=model,
      partitioner=partitioner,
      optimizer=optimizers.adamw(schedule=schedule),
      learning_rate_schedule=schedule,
      num_microbatches=num_microbatches,
      seed=seed,
  )

  rows = batch_size // jax.process_count()
  rng = np.random.default_rng(seed + jax.process_index())
  batches = [synthetic_batch(rng, rows, seq_len, cfg.vocab_size, encoder_seq_len) for _ in range(2)]
  shapes = {k: (batch_size,) + v.shape[1:] for k, v in batches[0].items()}

  t0 = time.perf_counter()
  state = trainer.init_state(shapes)
  jax.block_until_ready(state)
  init_s = time.perf_counter() - t0
  counts = param_counts(state.params, cfg.tie_embeddings, transformer_fraction(cfg))

  def step(i):
    nonlocal state
    state, metrics = trainer.train_step(state, batches[i % len(batches)])
    return (state, metrics), lambda: float(metrics_lib.values(metrics)["loss"])

  contenders = {"podzoo": step}
  if baseline:
    contenders["baseline"] = _baseline_step(cfg, batches, seed)
  timed = time_alternating(contenders, steps, warmup_steps)
  first_step_s, times, final_loss = timed["podzoo"]

  median = _percentile(times, 50)
  tokens_per_step = batch_size * seq_len
  flops = model_flops_per_step(cfg, counts, batch_size, seq_len, encoder_seq_len)
  num_devices = jax.device_count()
  achieved = flops / median / num_devices / 1e12
  device_kind = jax.devices()[0].device_kind
  peak = peak_tflops if peak_tflops is not None else peak_tflops_for(device_kind)
  memory, memory_label = peak_memory()
  hq = cfg.num_heads * cfg.head_dim
  return {
      "model": type(model).__name__,
      "module": type(model.module).__name__,
      "feature_converter": model.FEATURE_CONVERTER_CLS.name,
      "batch_size": batch_size,
      "seq_len": seq_len,
      "encoder_seq_len": encoder_seq_len,
      "num_microbatches": num_microbatches,
      "steps": steps,
      "warmup_steps": warmup_steps,
      "dtype": cfg.dtype,
      "param_dtype": cfg.param_dtype,
      "attention_impl": cfg.attention_impl,
      "remat_policy": cfg.remat_policy,
      "scan_layers": cfg.scan_layers,
      "tie_embeddings": cfg.tie_embeddings,
      "optimizer": f"adamw (constant learning rate {LEARNING_RATE})",
      "mesh_shape": {k: int(v) for k, v in partitioner.mesh.shape.items()},
      "platform": jax.devices()[0].platform,
      "device_kind": device_kind,
      "device_count": num_devices,
      "process_count": jax.process_count(),
      "jax_version": jax.__version__,
      **counts,
      "init_s": init_s,
      "first_step_s": first_step_s,
      "compile_s": first_step_s - median,
      "step_time_median_s": median,
      "step_time_p90_s": _percentile(times, 90),
      "step_time_mean_s": float(np.mean(times)),
      "step_time_min_s": float(np.min(times)),
      "step_times_s": [float(t) for t in times],
      "tokens_per_step": tokens_per_step,
      "tokens_per_second": tokens_per_step / median,
      "tokens_per_second_per_device": tokens_per_step / median / num_devices,
      "flops_formula": (
          "6*N + 12*L*H*Q*T per token (PaLM appendix B)"
          if not encdec
          else "enc: 6*N_enc + 12*L_enc*H*Q*T_enc; dec: 6*N_dec + 12*L_dec*H*Q*(T_dec+T_enc) per token"
      ),
      "model_flops_per_token": flops / tokens_per_step,
      "model_flops_per_step": flops,
      "attention_flops_per_token": (12 * cfg.num_attention_layers * hq * seq_len)
      if not encdec
      else None,
      "achieved_tflops_per_device": achieved,
      "peak_tflops_per_device": peak,
      "peak_tflops_source": (
          "--peak_tflops"
          if peak_tflops is not None
          else "device table (dense bf16)"
          if peak is not None
          else "unknown device"
      ),
      "mfu": achieved / peak if peak else None,
      "peak_memory_bytes": memory,
      "peak_memory_source": memory_label,
      "final_loss": final_loss,
      **(_baseline_results(timed["baseline"], median, flops, peak) if baseline else {}),
  }


def time_alternating(
    contenders: dict[str, Callable[[int], tuple[Any, Callable[[], float]]]],
    steps: int,
    warmup_steps: int,
) -> dict[str, tuple[float, list[float], float]]:
  """{name: (first step s, timed step times, final loss)}. Each contender's step(i) runs step
  i and returns (what to block on, the loss getter); the contenders take turns step by step,
  so a change in the machine's load falls on both alike."""
  first = {}
  for name, step in contenders.items():
    start = time.perf_counter()
    jax.block_until_ready(step(0)[0])
    first[name] = time.perf_counter() - start
  for i in range(warmup_steps):
    for step in contenders.values():
      jax.block_until_ready(step(1 + i)[0])
  times = {name: [] for name in contenders}
  losses = {}
  for i in range(steps):
    for name, step in contenders.items():
      start = time.perf_counter()
      out, losses[name] = step(1 + warmup_steps + i)
      jax.block_until_ready(out)
      times[name].append(time.perf_counter() - start)
  return {name: (first[name], times[name], losses[name]()) for name in contenders}


def _baseline_step(cfg, batches, seed: int) -> Callable[[int], tuple[Any, Callable[[], float]]]:
  """The plain Flax/optax loop (tools/plain_flax_lm.py) of `cfg`'s dims on the same batches."""
  model = plain_flax_lm.from_config(cfg)
  tx = plain_flax_lm.adamw(LEARNING_RATE)
  # Host (numpy) batches, as podzoo's step gets them: each step pays its own transfer.
  inputs = [b["decoder_input_tokens"] for b in batches]
  targets = [b["decoder_target_tokens"] for b in batches]
  params, opt_state = plain_flax_lm.init(model, tx, jax.random.PRNGKey(seed), inputs[0])
  train_step = plain_flax_lm.make_train_step(model, tx)

  def step(i):
    nonlocal params, opt_state
    params, opt_state, loss = train_step(
        params, opt_state, inputs[i % len(inputs)], targets[i % len(targets)]
    )
    return (params, opt_state, loss), lambda: float(loss)

  return step


def _baseline_results(
    timed: tuple[float, list[float], float], median: float, flops: float, peak: Optional[float]
) -> dict[str, Any]:
  """The plain loop's figures, its rates by podzoo's model FLOPs (the same model)."""
  first_step_s, times, final_loss = timed
  baseline_median = _percentile(times, 50)
  achieved = flops / baseline_median / jax.device_count() / 1e12
  return {
      "baseline": "plain Flax linen + optax loop (tools/plain_flax_lm.py)",
      "baseline_first_step_s": first_step_s,
      "baseline_compile_s": first_step_s - baseline_median,
      "baseline_step_time_median_s": baseline_median,
      "baseline_step_times_s": [float(t) for t in times],
      "baseline_final_loss": final_loss,
      "baseline_achieved_tflops_per_device": achieved,
      "baseline_mfu": achieved / peak if peak else None,
      "speed_vs_baseline": baseline_median / median,
  }


def _human(n: float, unit: str = "") -> str:
  for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
    if abs(n) >= scale:
      return f"{n / scale:.3f} {suffix}{unit}"
  return f"{n:.3f} {unit}".rstrip()


def format_table(r: dict[str, Any]) -> str:
  mesh = " x ".join(f"{k}={v}" for k, v in r["mesh_shape"].items())
  lengths = f"{r['seq_len']}" + (
      f" (encoder {r['encoder_seq_len']})" if r["encoder_seq_len"] else ""
  )
  rows = [
      ("model", f"{r['model']} ({', '.join(os.path.basename(f) for f in r['gin_files'])})"),
      ("overrides", "; ".join(r["gin_overrides"]) or "-"),
      (
          "device",
          f"{r['device_count']} x {r['device_kind']} ({r['platform']}), jax {r['jax_version']}",
      ),
      ("mesh", mesh),
      ("batch x seq_len", f"{r['batch_size']} x {lengths}, {r['num_microbatches']} microbatch(es)"),
      (
          "dtype / params",
          f"{r['dtype']} / {r['param_dtype']}, attention {r['attention_impl']}, "
          f"remat {r['remat_policy']}",
      ),
      (
          "parameters",
          f"{r['params_total']:,}, activated per token {r['params_activated']:,} "
          f"(N for FLOPs {r['params_flops']:,})",
      ),
      ("init (compile+run)", f"{r['init_s']:.3f} s"),
      ("first step", f"{r['first_step_s']:.3f} s (compile ~{r['compile_s']:.3f} s)"),
      ("step time median", f"{r['step_time_median_s'] * 1e3:.2f} ms over {r['steps']} steps"),
      ("step time p90", f"{r['step_time_p90_s'] * 1e3:.2f} ms"),
      (
          "tokens/s",
          f"{r['tokens_per_second']:,.0f} ({r['tokens_per_second_per_device']:,.0f} per device)",
      ),
      ("model FLOPs/step", f"{_human(r['model_flops_per_step'], 'FLOP')} [{r['flops_formula']}]"),
      ("TFLOP/s per device", f"{r['achieved_tflops_per_device']:.4f}"),
      (
          "MFU",
          "n/a (unknown peak; pass --peak_tflops)"
          if r["mfu"] is None
          else f"{100 * r['mfu']:.2f}% of {r['peak_tflops_per_device']:g} TFLOP/s ({r['peak_tflops_source']})",
      ),
      ("peak memory", f"{r['peak_memory_bytes'] / 2**30:.3f} GiB ({r['peak_memory_source']})"),
      ("final loss", f"{r['final_loss']:.4f}"),
  ]
  if "baseline" in r:
    rows += [
        (
            "plain Flax first step",
            f"{r['baseline_first_step_s']:.3f} s (compile ~{r['baseline_compile_s']:.3f} s)",
        ),
        (
            "plain Flax step median",
            f"{r['baseline_step_time_median_s'] * 1e3:.2f} ms, "
            f"{r['baseline_achieved_tflops_per_device']:.4f} TFLOP/s per device "
            f"(final loss {r['baseline_final_loss']:.4f})",
        ),
        (
            "podzoo speed vs plain",
            f"{r['speed_vs_baseline']:.3f}x (plain median / podzoo median; steps alternated)",
        ),
    ]
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"{k.ljust(width)} | {v}" for k, v in rows)


# --- command line ----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
  parser = benchmark_common.new_parser(
      prog="python -m tools.benchmark_train",
      description="Benchmark the training step of a gin-configured model on synthetic batches.",
      epilog="Gin overrides: --gin.NAME=VALUE (repeatable), e.g. "
      '--gin.TransformerConfig.dtype="\'float32\'" --gin.Partitioner.mesh_shape="(-1,1,1,1)".',
  )
  parser.add_argument("--batch_size", type=int, default=8, help="global batch size (rows)")
  parser.add_argument("--seq_len", type=int, default=128, help="decoder (target) length")
  parser.add_argument(
      "--encoder_seq_len",
      type=int,
      default=None,
      help="encoder-decoder models: input length (default --seq_len)",
  )
  parser.add_argument("--steps", type=int, default=20, help="timed steps")
  parser.add_argument(
      "--warmup_steps", type=int, default=3, help="untimed steps after the first (compiling) step"
  )
  parser.add_argument("--num_microbatches", type=int, default=1, help="gradient accumulation")
  parser.add_argument(
      "--peak_tflops",
      type=float,
      default=None,
      help="peak TFLOP/s per device for MFU (default: by device kind)",
  )
  parser.add_argument(
      "--baseline",
      action="store_true",
      help="also time a plain Flax/optax loop of the same dims, alternating steps with podzoo's",
  )
  parser.add_argument("--json_out", default=None, help="write the results here (default: stdout)")
  parser.add_argument("--seed", type=int, default=0)
  benchmark_common.add_multihost_arguments(parser)
  return parser


def _parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = _parser()
  args, bindings = benchmark_common.parse_known_args(parser, argv)
  benchmark_common.require_positive(
      parser, args, ("batch_size", "seq_len", "steps", "num_microbatches")
  )
  if args.warmup_steps < 0:
    parser.error(f"--warmup_steps={args.warmup_steps} must be >= 0")
  if args.encoder_seq_len is not None and args.encoder_seq_len < 1:
    parser.error(f"--encoder_seq_len={args.encoder_seq_len} must be >= 1")
  return args, bindings


def _load_model(args: argparse.Namespace, bindings: list[str]):
  return benchmark_common.load_model(
      args.gin_file, args.gin_search_paths, bindings, _configured_model, "benchmark_train"
  )


def _run(args: argparse.Namespace, model) -> dict[str, Any]:
  return run_benchmark(
      model,
      batch_size=args.batch_size,
      seq_len=args.seq_len,
      steps=args.steps,
      warmup_steps=args.warmup_steps,
      num_microbatches=args.num_microbatches,
      encoder_seq_len=args.encoder_seq_len,
      peak_tflops=args.peak_tflops,
      seed=args.seed,
      baseline=args.baseline,
  )


def main(argv: Optional[Sequence[str]] = None) -> int:
  return benchmark_common.run_main(
      argv, _parse_args, _load_model, _run, format_table, packages=("flax", "optax")
  )


if __name__ == "__main__":
  sys.exit(main())
