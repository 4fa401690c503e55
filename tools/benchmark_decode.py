"""Decoding benchmark: KV-cached greedy decoding against a no-cache recompute baseline.

  python -m tools.benchmark_decode --gin_file=gin/models/decoder_only_tiny.gin \
      [--gin_file=...] [--gin.NAME=VALUE ...] --batch_sizes 1,8,64 --prompt_len 32 \
      --gen_len 256 [--repeats 3] [--warmup 1] [--json_out FILE] [--match_tol X]

On a CPU add --gin.TransformerConfig.dtype="'float32'" (CPUs have no fast bf16).

Decoder-only models only. Only the core is used (jax, flax, gin-config; no TensorFlow or
SeqIO), so this runs on an accelerator machine without the [tasks] extra. The model comes
from gin (the MODEL macro); its parameters are freshly initialised (--seed), and everything
runs under plain `jax.jit` on one device (jax.devices()[0]; no mesh).

For each batch size, in one run and on the same parameters and prompts (uniform random
tokens in [2, vocab), --prompt_len of them per row), two greedy decoders each generate
exactly --gen_len tokens per row. End of sequence can not stop either of them: the EOS id
(the model's eos_id, 1) gets log-probability -1e30 before the argmax.

  * cached: `jax.jit(model.predict_batch)` with `model_zoo.decoding.sampling.greedy(
    logit_callback=<EOS suppression>)` on a prefix-LM batch of length prompt_len + gen_len
    built by `DecoderFeatureConverter.prompt_batch` (the prompt is marked by
    decoder_causal_attention). The decoder runs prompt_len + gen_len single-token steps
    against the KV cache (the prompt is fed, one forced token a step, through the cache).
  * no-cache: one `jax.jit` holding a `lax.fori_loop` over the gen_len steps; step t runs
    the model's full forward pass over the whole fixed-length (prompt_len + gen_len)
    sequence buffer, [BOS, prompt, generated so far, padding], and takes the argmax at
    position t. The buffer is attended causally everywhere (no decoder_causal_attention):
    that is how the cached decoder treats the prompt, token by token; a bidirectional
    prefix would be a different model function and could not give the same tokens.

Measured per decoder: the compile (jit lower + XLA compile, ahead of time, so no timed call
compiles), --warmup untimed calls, then --repeats timed calls each ended by
`jax.block_until_ready`; the median is reported (and every time).
  * tokens/s = batch * gen_len / median time (generated tokens only; the cached decoder's
    prompt steps are part of its time).
  * speed-up = no-cache median time / cached median time (= cached tokens/s / no-cache
    tokens/s).
  * memory: the compiled program's buffers (XLA memory_analysis: arguments + outputs +
    temporaries - aliased; parameters included) for each decoder; and the process peak
    so far, after both decoders of that batch size have run: max over local devices of
    memory_stats()["peak_bytes_in_use"] where the backend reports it (GPU, TPU), else the
    process's maximum resident set size, labelled "host RSS". Both peaks are never reset, so
    they include every earlier batch size.

Outputs check: the two decoders' tokens are compared exactly ("outputs match"). Each
decoder's tokens are also scored by one teacher-forced full forward pass over [BOS, prompt,
tokens] (EOS suppressed), which gives two float-noise measures, each held to --match_tol
(default 1e-3 nats for float32 activations, 0.05 otherwise):
  * greedy gap: at every generated position, best log-prob - the chosen token's log-prob;
  * score error: |the decoder's own score (summed log-probs of its tokens; predict_batch's
    scores for the cached decoder) - the teacher-forced sum| / gen_len. This one checks the
    KV-cache path's log-probabilities themselves, not only their argmax: a randomly
    initialised model with tied embeddings mostly repeats the last prompt token (the
    residual stream carries the input embedding onto its own logit), so equal tokens alone
    say little about the cache (distinct_generated_tokens_per_row shows how varied they are).
The verdict is "identical" (same tokens, all measures within tolerance), "differ within float
noise" (a near tie broken differently, after which the continuations part) or "MISMATCH"
(a measure beyond the tolerance); a MISMATCH makes the command exit with status 1 after the
results are printed.

The results go to --json_out as JSON (numbers and config), or to stdout after the table
when --json_out is not given.
"""

import argparse
import functools
import os
import sys
import time
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from model_zoo import models
from model_zoo.errors import UserError
from tools import benchmark_common
from trainers import cli
from model_zoo.decoding import sampling
from model_zoo.feature_converters import DecoderFeatureConverter

NEG_INF = -1e30
FLOAT32_MATCH_TOL = 1e-3  # nats
LOW_PRECISION_MATCH_TOL = 0.05

_configured_model = benchmark_common.model_configurable("benchmark_decode")


# --- the two decoders --------------------------------------------------------------------------
def suppress_eos(eos_id: int) -> Callable[[jax.Array, Any], jax.Array]:
  """A logit callback giving `eos_id` log-probability -1e30, so no row ever ends early."""

  def logit_callback(log_probs: jax.Array, state=None) -> jax.Array:
    del state
    return log_probs.at[..., eos_id].set(NEG_INF)

  return logit_callback


def random_prompts(
    rng: np.random.Generator, rows: int, prompt_len: int, vocab_size: int
) -> np.ndarray:
  """Uniform random tokens in [2, vocab) (0 is padding / BOS, 1 EOS): [rows, prompt_len]."""
  return rng.integers(2, vocab_size, size=(rows, prompt_len), dtype=np.int32)


def cached_decoder(model) -> Callable[..., tuple[jax.Array, jax.Array]]:
  """model.predict_batch with greedy decoding and EOS suppressed: (params, batch) -> (tokens, scores)."""
  decoder = sampling.greedy(logit_callback=suppress_eos(model.eos_id))
  return functools.partial(model.predict_batch, decoder=decoder)


def _full_logits(model, params, inputs: jax.Array) -> jax.Array:
  """The full forward pass over `inputs` [B, L], causal, no padding: fp32 logits [B, L, V]."""
  return model.module.apply(
      {"params": params}, decoder_input_tokens=inputs, decoder_target_tokens=jnp.ones_like(inputs)
  )


def _step_log_probs(logits: jax.Array, eos_id: int) -> jax.Array:
  return suppress_eos(eos_id)(jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1))


def nocache_decoder(model, gen_len: int) -> Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]:
  """Greedy decoding recomputing the whole sequence every step.

  (params, prompts [B, P]) -> (tokens [B, G], scores [B]): the scores, as predict_batch's,
  sum the chosen tokens' log-probabilities (after EOS suppression).
  """

  def decode(params, prompts: jax.Array) -> tuple[jax.Array, jax.Array]:
    rows, prompt_len = prompts.shape
    length = prompt_len + gen_len
    inputs = jnp.zeros((rows, length), jnp.int32).at[:, 1 : prompt_len + 1].set(prompts)

    def step(i, carry):
      inputs, generated, scores = carry
      t = prompt_len + i  # the position being chosen; its input is the token at t - 1
      logits = lax.dynamic_index_in_dim(
          _full_logits(model, params, inputs), t, axis=1, keepdims=False
      )
      log_probs = _step_log_probs(logits, model.eos_id)
      token = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
      scores = scores + jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]
      generated = lax.dynamic_update_slice(generated, token[:, None], (0, i))
      fed = lax.dynamic_update_slice(inputs, token[:, None], (0, jnp.minimum(t + 1, length - 1)))
      return jnp.where(t + 1 < length, fed, inputs), generated, scores

    init = (inputs, jnp.zeros((rows, gen_len), jnp.int32), jnp.zeros((rows,), jnp.float32))
    _, generated, scores = lax.fori_loop(0, gen_len, step, init)
    return generated, scores

  return decode


def teacher_forced(model) -> Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
  """(params, prompts [B, P], tokens [B, G]) -> (gaps [B, G], log-probs [B, G]) of `tokens`.

  One full forward pass over [BOS, prompt, tokens[:-1]] (EOS suppressed as in decoding). A
  gap is the best log-prob minus the chosen token's: all zero exactly when `tokens` are the
  greedy continuation.
  """

  def score(params, prompts, tokens):
    rows, prompt_len = prompts.shape
    inputs = jnp.concatenate([jnp.zeros((rows, 1), jnp.int32), prompts, tokens[:, :-1]], axis=1)
    log_probs = _step_log_probs(_full_logits(model, params, inputs)[:, prompt_len:], model.eos_id)
    chosen = jnp.take_along_axis(log_probs, tokens[..., None], axis=-1)[..., 0]
    return jnp.max(log_probs, axis=-1) - chosen, chosen

  return score


# --- measurement helpers -----------------------------------------------------------------------
def _compile(fn: Callable[..., Any], *args) -> tuple[Any, float]:
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - start


def _timed_calls(
    compiled, args: tuple, repeats: int, warmup: int
) -> tuple[list[float], list[float], Any]:
  """(warm-up times, timed times, last output) of `warmup` + `repeats` blocking calls."""
  times, out = [], None
  for _ in range(warmup + repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - start)
  return times[:warmup], times[warmup:], out


def program_memory(compiled) -> Optional[int]:
  """XLA's buffer sizes of the compiled program: arguments + outputs + temporaries - aliased.

  None where the backend gives no memory analysis.
  """
  try:
    stats = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  (not every backend / version implements it)
    return None
  if stats is None:
    return None
  return int(
      stats.argument_size_in_bytes
      + stats.output_size_in_bytes
      + stats.temp_size_in_bytes
      - stats.alias_size_in_bytes
  )


def compare_outputs(
    cached: dict[str, np.ndarray], nocache: dict[str, np.ndarray], tol: float
) -> dict[str, Any]:
  """Exact token comparison plus the float-noise verdict (see the module docstring).

  Each of `cached`, `nocache` holds "tokens" [B, G] and "scores" [B] from the decoder, and
  "gaps" and "log_probs" [B, G] from `teacher_forced` on those tokens.
  """
  equal = cached["tokens"] == nocache["tokens"]
  rows_equal = np.all(equal, axis=1)
  first = [int(np.argmax(row)) for row in ~equal if row.any()]
  gen_len = equal.shape[1]

  def score_error(d):  # the decoder's own scores against the teacher-forced full forward
    return float(np.max(np.abs(d["scores"] - d["log_probs"].sum(axis=1)))) / gen_len

  out = {
      "outputs_match": bool(rows_equal.all()),
      "matching_rows": int(rows_equal.sum()),
      "matching_tokens_fraction": float(equal.mean()),
      "first_mismatch_step": min(first) if first else None,
      "cached_greedy_max_gap": float(np.max(cached["gaps"])),
      "nocache_greedy_max_gap": float(np.max(nocache["gaps"])),
      "cached_score_error_per_token": score_error(cached),
      "nocache_score_error_per_token": score_error(nocache),
      "distinct_generated_tokens_per_row": float(np.mean([len(set(r)) for r in cached["tokens"]])),
  }
  within = all(
      out[k] <= tol
      for k in (
          "cached_greedy_max_gap",
          "nocache_greedy_max_gap",
          "cached_score_error_per_token",
          "nocache_score_error_per_token",
      )
  )
  if not within:
    out["match_verdict"] = "MISMATCH"
  elif out["outputs_match"]:
    out["match_verdict"] = "identical"
  else:
    out["match_verdict"] = "differ within float noise"
  return out


# --- the benchmark -----------------------------------------------------------------------------
def _check_model(model) -> None:
  if not isinstance(model, models.DecoderOnlyModel):
    raise ValueError(
        f"benchmark_decode needs a decoder-only model (MODEL = @DecoderOnlyModel()); the "
        f"gin files give {type(model).__name__} (feature converter "
        f"{model.FEATURE_CONVERTER_CLS.name!r})."
    )
  vocab = model.vocab_size
  if vocab <= max(2, model.eos_id + 1):
    raise ValueError(
        f"TransformerConfig.vocab_size={vocab} leaves no token to decode: ids 0 (padding) "
        f"and {model.eos_id} (EOS) are never prompted or generated."
    )


def run_benchmark(
    model,
    *,
    batch_sizes: Sequence[int],
    prompt_len: int,
    gen_len: int,
    repeats: int,
    warmup: int = 1,
    match_tol: Optional[float] = None,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
  """Times both decoders at each batch size on one device; returns config and per-batch results."""
  _check_model(model)
  cfg = model.module.config
  length = prompt_len + gen_len
  if match_tol is None:
    match_tol = (
        FLOAT32_MATCH_TOL if jnp.dtype(cfg.dtype) == jnp.float32 else LOW_PRECISION_MATCH_TOL
    )
  device = jax.devices()[0]
  example = {
      "decoder_input_tokens": np.zeros((1, length), np.int32),
      "decoder_target_tokens": np.ones((1, length), np.int32),
  }
  with jax.default_device(device):
    params = jax.jit(lambda rng: nn.unbox(model.init(rng, example)))(jax.random.PRNGKey(seed))
  params = jax.device_put(params, device)
  params_total = int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))

  cached_fn, nocache_fn = cached_decoder(model), nocache_decoder(model, gen_len)
  score_fn = jax.jit(teacher_forced(model))
  rng = np.random.default_rng(seed)
  rows = []
  for batch_size in batch_sizes:
    prompts = random_prompts(rng, batch_size, prompt_len, model.vocab_size)
    batch = jax.device_put(DecoderFeatureConverter.prompt_batch(prompts, batch_size, length), device)
    prompts_on_device = jax.device_put(prompts, device)
    generated = batch_size * gen_len

    log(f"batch {batch_size}: compiling")
    cached_compiled, cached_compile_s = _compile(cached_fn, params, batch)
    nocache_compiled, nocache_compile_s = _compile(nocache_fn, params, prompts_on_device)
    log(f"batch {batch_size}: cached decoding ({warmup} warm-up + {repeats} timed)")
    cached_warmup, cached_times, cached_out = _timed_calls(
        cached_compiled, (params, batch), repeats, warmup
    )
    cached_s = benchmark_common.percentile(cached_times, 50)
    log(
        f"batch {batch_size}: cached {cached_s:.3f} s; no-cache decoding ({warmup} warm-up + "
        f"{repeats} timed)"
    )
    nocache_warmup, nocache_times, nocache_out = _timed_calls(
        nocache_compiled, (params, prompts_on_device), repeats, warmup
    )
    nocache_s = benchmark_common.percentile(nocache_times, 50)
    memory, memory_label = benchmark_common.peak_memory()

    outputs = {}
    for name, (tokens, scores) in (("cached", cached_out), ("nocache", nocache_out)):
      tokens = np.asarray(tokens)[:, :gen_len]  # predict_batch pads the continuation to the length
      gaps, log_probs = jax.device_get(score_fn(params, prompts_on_device, tokens))
      outputs[name] = {
          "tokens": tokens,
          "scores": np.asarray(scores),
          "gaps": gaps,
          "log_probs": log_probs,
      }
    check = compare_outputs(outputs["cached"], outputs["nocache"], match_tol)
    log(
        f"batch {batch_size}: no-cache {nocache_s:.3f} s, speed-up {nocache_s / cached_s:.2f}x, "
        f"outputs {check['match_verdict']}"
    )
    rows.append(
        {
            "batch_size": batch_size,
            "generated_tokens": generated,
            "cached_compile_s": cached_compile_s,
            "cached_time_median_s": cached_s,
            "cached_times_s": cached_times,
            "cached_warmup_times_s": cached_warmup,
            "cached_tokens_per_second": generated / cached_s,
            "cached_program_bytes": program_memory(cached_compiled),
            "nocache_compile_s": nocache_compile_s,
            "nocache_time_median_s": nocache_s,
            "nocache_times_s": nocache_times,
            "nocache_warmup_times_s": nocache_warmup,
            "nocache_tokens_per_second": generated / nocache_s,
            "nocache_program_bytes": program_memory(nocache_compiled),
            "speedup": nocache_s / cached_s,
            "peak_memory_bytes": memory,
            "peak_memory_source": memory_label,
            **check,
        }
    )

  return {
      "model": type(model).__name__,
      "module": type(model.module).__name__,
      "dtype": cfg.dtype,
      "param_dtype": cfg.param_dtype,
      "attention_impl": cfg.attention_impl,
      "scan_layers": cfg.scan_layers,
      "num_layers": cfg.num_layers,
      "num_heads": cfg.num_heads,
      "num_kv_heads": cfg.num_kv_heads,
      "head_dim": cfg.head_dim,
      "emb_dim": cfg.emb_dim,
      "vocab_size": cfg.vocab_size,
      "params_total": params_total,
      "platform": device.platform,
      "device_kind": device.device_kind,
      "device_count_used": 1,
      "jax_version": jax.__version__,
      "batch_sizes": list(batch_sizes),
      "prompt_len": prompt_len,
      "gen_len": gen_len,
      "sequence_length": length,
      "cached_decode_steps": length,
      "nocache_forward_passes": gen_len,
      "repeats": repeats,
      "warmup": warmup,
      "seed": seed,
      "eos_id": model.eos_id,
      "eos_suppressed": True,
      "match_tol": match_tol,
      "cached": (
          "jax.jit(model.predict_batch), greedy(logit_callback=EOS suppression), KV cache, "
          f"{length} single-token steps (prompt forced through the cache)"
      ),
      "nocache": (
          f"jax.jit(lax.fori_loop over {gen_len} steps of a full causal forward pass over "
          f"{length} tokens, argmax at the current position)"
      ),
      "speedup_definition": "nocache_time_median_s / cached_time_median_s",
      "min_speedup": min(r["speedup"] for r in rows),
      "all_outputs_match": all(r["outputs_match"] for r in rows),
      "any_mismatch_beyond_float_noise": any(r["match_verdict"] == "MISMATCH" for r in rows),
      "results": rows,
  }


def _mib(n: Optional[int]) -> str:
  return "n/a" if n is None else f"{n / 2**20:.1f}"


def format_table(r: dict[str, Any]) -> str:
  """The run's settings, then one line per batch size."""
  header = [
      (
          "model",
          f"{r['model']} ({', '.join(os.path.basename(f) for f in r['gin_files'])}), "
          f"{r['params_total']:,} parameters",
      ),
      ("overrides", "; ".join(r["gin_overrides"]) or "-"),
      ("device", f"1 x {r['device_kind']} ({r['platform']}), jax {r['jax_version']}"),
      ("dtype / params", f"{r['dtype']} / {r['param_dtype']}, attention {r['attention_impl']}"),
      (
          "lengths",
          f"prompt {r['prompt_len']} + generated {r['gen_len']} = {r['sequence_length']} "
          "(EOS suppressed)",
      ),
      ("timing", f"median of {r['repeats']} after {r['warmup']} warm-up (compile excluded)"),
      (
          "memory",
          f"peak = {r['results'][0]['peak_memory_source']}, so far; program = XLA buffers "
          "per decoder (cached / no-cache)",
      ),
  ]
  width = max(len(k) for k, _ in header)
  lines = [f"{k.ljust(width)} | {v}" for k, v in header]
  columns = (
      "batch",
      "cached tok/s",
      "no-cache tok/s",
      "speed-up",
      "cached s",
      "no-cache s",
      "peak MiB",
      "program MiB",
      "outputs",
  )
  table = [columns]
  for row in r["results"]:
    outputs = row["match_verdict"]
    if not row["outputs_match"]:
      outputs += (
          f" ({row['matching_rows']}/{row['batch_size']} rows equal, first at step "
          f"{row['first_mismatch_step']}, gaps {row['cached_greedy_max_gap']:.2g} / "
          f"{row['nocache_greedy_max_gap']:.2g})"
      )
    else:
      outputs = "match"
    table.append(
        (
            str(row["batch_size"]),
            f"{row['cached_tokens_per_second']:,.0f}",
            f"{row['nocache_tokens_per_second']:,.0f}",
            f"{row['speedup']:.2f}x",
            f"{row['cached_time_median_s']:.3f}",
            f"{row['nocache_time_median_s']:.3f}",
            _mib(row["peak_memory_bytes"]),
            f"{_mib(row['cached_program_bytes'])} / {_mib(row['nocache_program_bytes'])}",
            outputs,
        )
    )
  widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
  lines.append("")
  for i, line in enumerate(table):
    lines.append(
        " | ".join(
            cell.rjust(w) if j < len(columns) - 1 else cell
            for j, (cell, w) in enumerate(zip(line, widths))
        ).rstrip()
    )
    if i == 0:
      lines.append("-+-".join("-" * w for w in widths))
  return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="python -m tools.benchmark_decode",
      allow_abbrev=False,
      description="Benchmark cached greedy decoding against a no-cache recompute baseline.",
      epilog="Gin overrides: --gin.NAME=VALUE (repeatable), e.g. "
      "--gin.TransformerConfig.dtype=\"'float32'\".",
  )
  parser.add_argument(
      "--gin_file",
      action="append",
      default=[],
      required=True,
      help="model config (repeatable), e.g. gin/models/decoder_only_tiny.gin",
  )
  parser.add_argument("--gin_search_paths", default="", help="comma-separated directories")
  parser.add_argument("--batch_sizes", default="1,8,64", help="comma-separated batch sizes (rows)")
  parser.add_argument("--prompt_len", type=int, default=32, help="random prompt tokens per row")
  parser.add_argument("--gen_len", type=int, default=256, help="generated tokens per row")
  parser.add_argument("--repeats", type=int, default=3, help="timed calls per decoder (median)")
  parser.add_argument(
      "--warmup",
      type=int,
      default=1,
      help="untimed calls per decoder (compiles happen ahead of time and are never timed)",
  )
  parser.add_argument(
      "--match_tol",
      type=float,
      default=None,
      help="log-prob tolerance (nats) of the greedy check (default: 1e-3 for float32 "
      "activations, else 0.05)",
  )
  parser.add_argument("--json_out", default=None, help="write the results here (default: stdout)")
  parser.add_argument("--seed", type=int, default=0, help="parameters and prompts")
  return parser


def _parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = _parser()
  args, rest = parser.parse_known_args(list(argv))
  bindings = benchmark_common.split_gin_overrides(parser, rest)
  try:
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
  except ValueError:
    parser.error(
        f"--batch_sizes={args.batch_sizes!r}: expected comma-separated integers, e.g. 1,8,64"
    )
  if not args.batch_sizes or min(args.batch_sizes) < 1:
    parser.error(f"--batch_sizes={args.batch_sizes} must be integers >= 1")
  for name in ("prompt_len", "gen_len", "repeats"):
    if getattr(args, name) < 1:
      parser.error(f"--{name}={getattr(args, name)} must be >= 1")
  if args.warmup < 0:
    parser.error(f"--warmup={args.warmup} must be >= 0")
  if args.match_tol is not None and args.match_tol < 0:
    parser.error(f"--match_tol={args.match_tol} must be >= 0")
  return args, bindings


def _load_model(args: argparse.Namespace, bindings: list[str]):
  return benchmark_common.load_model(
      args.gin_file, args.gin_search_paths, bindings, _configured_model, "benchmark_decode"
  )


def main(argv: Optional[Sequence[str]] = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  args, bindings = _parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  gin.clear_config()  # main() may run more than once in a process (tests, notebooks)
  try:
    model = _load_model(args, bindings)
    results = run_benchmark(
        model,
        batch_sizes=args.batch_sizes,
        prompt_len=args.prompt_len,
        gen_len=args.gen_len,
        repeats=args.repeats,
        warmup=args.warmup,
        match_tol=args.match_tol,
        seed=args.seed,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
  except UserError as e:
    return benchmark_common.report_user_error(e)
  results = {**benchmark_common.run_info(args.gin_file, bindings, ("flax",)), **results}
  benchmark_common.emit(results, format_table(results), args.json_out)
  if results["any_mismatch_beyond_float_noise"]:
    print(
        "ERROR: cached and no-cache greedy decoding disagree beyond float noise (see "
        "match_verdict); the KV-cache path does not compute the same model.",
        file=sys.stderr,
        flush=True,
    )
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
