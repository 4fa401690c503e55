"""Decoding benchmark: KV-cached greedy decoding against a no-cache recompute baseline, at
one or more prompt lengths.

  python -m tools.benchmark_decode --gin_file=gin/models/decoder_only_tiny.gin \
      [--gin_file=...] [--gin.NAME=VALUE ...] --batch_sizes 1,8,64 \
      (--prompt_len 32 | --prompt_lens 32,512) --gen_len 256 [--repeats 3] [--warmup 1] \
      [--json_out FILE] [--match_tol X]

On a CPU add --gin.TransformerConfig.dtype="'float32'" (CPUs have no fast bf16).

Decoder-only models only. Only the core is used (jax, flax, gin-config; no TensorFlow or
SeqIO), so this runs on an accelerator machine without the [tasks] extra. The model comes
from gin (the MODEL macro); its parameters are freshly initialised (--seed), and everything
runs under plain `jax.jit` on one device (jax.devices()[0]; no mesh).

For each batch size and each prompt length (--prompt_lens, or the single --prompt_len), in
one run and on the same parameters and prompts (uniform random tokens in [2, vocab),
prompt_len of them per row), two greedy decoders each generate exactly --gen_len tokens per
row. End of sequence can not stop either of them: the EOS id (the model's eos_id, 1) gets
log-probability -1e30 before the argmax.

  * cached: `jax.jit(model.predict_batch)` with `model_zoo.decoding.sampling.greedy(
    logit_callback=<EOS suppression>)` on a prefix-LM batch of length prompt_len + gen_len
    built by `DecoderFeatureConverter.prompt_batch` (the prompt is marked by
    decoder_causal_attention). `model.decode_inputs` prefills BOS + prompt into the KV cache
    in one pass; the decode loop then runs gen_len single-token steps, whatever the prompt
    length. Its two parts are also timed on their own, as two programs:
      - prefill: `model.decode_inputs(params, batch).cache` (the prompt's forward pass);
      - decode loop: the greedy decoder on decode_inputs with that prefilled cache passed
        in (XLA drops the unused prefill), so it times the gen_len steps alone. Its tokens
        must equal predict_batch's ("loop_outputs_match_cached").
    The loop runs gen_len steps whatever the prompt length. What still grows with the prompt
    is each step's own cost: attention reads the whole fixed-length cache buffer
    (prompt_len + gen_len positions, masked), so "loop x" above 1 at a long prompt is that
    per-step cost, not extra steps.
  * no-cache: one `jax.jit` holding a `lax.fori_loop` over the gen_len steps; step t runs
    the model's full forward pass over the whole fixed-length (prompt_len + gen_len)
    sequence buffer, [BOS, prompt, generated so far, padding], and takes the argmax at
    position t. The buffer is attended causally everywhere (no decoder_causal_attention), as
    a causal LM (DecoderOnlyModel's default feature converter, "decoder") prefills its
    prompt; a prefix LM's bidirectional prompt would be another model function, which this
    baseline does not compute.

Measured per program: the compile (jit lower + XLA compile, ahead of time, so no timed call
compiles), --warmup untimed calls, then --repeats timed calls each ended by
`jax.block_until_ready`; the median is reported (and every time).
  * tokens/s = batch * gen_len / median time (generated tokens only; the cached decoder's
    prefill is part of its time, not of the decode loop's).
  * loop x = the decode loop's median time / its median time at the shortest prompt length
    of the same batch size (1.00 when flat in the prompt length).
  * speed-up = no-cache median time / cached median time (= cached tokens/s / no-cache
    tokens/s).
  * memory: the compiled program's buffers (XLA memory_analysis: arguments + outputs +
    temporaries - aliased; parameters included) for each decoder; and the process peak
    so far, after both decoders of that batch size have run: max over local devices of
    memory_stats()["peak_bytes_in_use"] where the backend reports it (GPU, TPU), else the
    process's maximum resident set size, labelled "host RSS". Both peaks are never reset, so
    they include every earlier batch size and prompt length.

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
(a measure beyond the tolerance, or a decode loop whose tokens differ from predict_batch's);
a MISMATCH makes the command exit with status 1 after the results are printed.

The results go to --json_out as JSON (numbers and config), or to stdout after the table
when --json_out is not given.
"""

import argparse
import dataclasses
import functools
import os
import sys
import time
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from model_zoo import models
from model_zoo.errors import ConfigError
from tools import benchmark_common
from model_zoo.decoding import sampling
from model_zoo.feature_converters import DecoderFeatureConverter

NEG_INF = -1e30
DEFAULT_PROMPT_LEN = 32
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


def prefill(model) -> Callable[[Any, Any], Any]:
  """(params, batch) -> the KV cache with BOS + prompt prefilled (decode_inputs' one pass)."""
  return lambda params, batch: model.decode_inputs(params, batch).cache


def decode_loop(model) -> Callable[[Any, Any, Any], tuple[jax.Array, jax.Array]]:
  """(params, batch, prefilled cache) -> (tokens [B, L], scores [B]): the cached decoder's loop
  alone, started from a cache `prefill` made (decode_inputs' own prefill goes unused, and
  XLA removes it from the compiled program)."""
  decoder = sampling.greedy(logit_callback=suppress_eos(model.eos_id))

  def run(params, batch, cache):
    inputs = dataclasses.replace(model.decode_inputs(params, batch), cache=cache)
    tokens, scores = decoder(inputs, rng=jax.random.PRNGKey(0), eos_id=model.eos_id)
    return tokens[:, 0], scores[:, 0]

  return run


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
    raise ConfigError(
        f"benchmark_decode needs a decoder-only model (MODEL = @DecoderOnlyModel()); the "
        f"gin files give {type(model).__name__} (feature converter "
        f"{model.FEATURE_CONVERTER_CLS.name!r})."
    )
  vocab = model.vocab_size
  if vocab <= max(2, model.eos_id + 1):
    raise ConfigError(
        f"TransformerConfig.vocab_size={vocab} leaves no token to decode: ids 0 (padding) "
        f"and {model.eos_id} (EOS) are never prompted or generated."
    )


def _timed_program(fn, args: tuple, repeats: int, warmup: int) -> dict[str, Any]:
  """Compiles `fn` for `args` ahead of time, then times it: compile, times, median, output."""
  compiled, compile_s = _compile(fn, *args)
  warmup_times, times, out = _timed_calls(compiled, args, repeats, warmup)
  return {
      "compiled": compiled,
      "compile_s": compile_s,
      "warmup_times_s": warmup_times,
      "times_s": times,
      "median_s": benchmark_common.percentile(times, 50),
      "out": out,
  }


def _measure(
    model,
    params,
    prompts: np.ndarray,
    gen_len: int,
    repeats: int,
    warmup: int,
    match_tol: float,
    device,
    log: Callable[[str], None],
) -> dict[str, Any]:
  """One (batch size, prompt length) row: prefill, decode loop, cached and no-cache decoders."""
  batch_size, prompt_len = prompts.shape
  length = prompt_len + gen_len
  batch = jax.device_put(DecoderFeatureConverter.prompt_batch(prompts, batch_size, length), device)
  prompts_on_device = jax.device_put(prompts, device)
  generated = batch_size * gen_len
  where = f"batch {batch_size}, prompt {prompt_len}"

  log(f"{where}: prefill and decode loop ({warmup} warm-up + {repeats} timed each)")
  pre = _timed_program(prefill(model), (params, batch), repeats, warmup)
  loop = _timed_program(decode_loop(model), (params, batch, pre["out"]), repeats, warmup)
  log(f"{where}: cached decoding (prefill + loop in one program)")
  cached = _timed_program(cached_decoder(model), (params, batch), repeats, warmup)
  log(
      f"{where}: prefill {pre['median_s']:.3f} s, loop {loop['median_s']:.3f} s, cached "
      f"{cached['median_s']:.3f} s; no-cache decoding"
  )
  nocache = _timed_program(
      nocache_decoder(model, gen_len), (params, prompts_on_device), repeats, warmup
  )
  memory, memory_label = benchmark_common.peak_memory()

  score_fn = jax.jit(teacher_forced(model))
  outputs = {}
  for name, (tokens, scores) in (("cached", cached["out"]), ("nocache", nocache["out"])):
    tokens = np.asarray(tokens)[:, :gen_len]  # predict_batch pads the continuation to the length
    gaps, log_probs = jax.device_get(score_fn(params, prompts_on_device, tokens))
    outputs[name] = {
        "tokens": tokens,
        "scores": np.asarray(scores),
        "gaps": gaps,
        "log_probs": log_probs,
    }
  check = compare_outputs(outputs["cached"], outputs["nocache"], match_tol)
  loop_tokens, loop_scores = jax.device_get(loop["out"])
  cached_tokens, cached_scores = jax.device_get(cached["out"])
  check["loop_outputs_match_cached"] = bool(
      np.array_equal(loop_tokens, cached_tokens)
      and np.allclose(loop_scores, cached_scores, rtol=0, atol=match_tol * gen_len)
  )
  if not check["loop_outputs_match_cached"]:
    check["match_verdict"] = "MISMATCH"
  speedup = nocache["median_s"] / cached["median_s"]
  log(
      f"{where}: no-cache {nocache['median_s']:.3f} s, speed-up {speedup:.2f}x, outputs "
      f"{check['match_verdict']}"
  )
  row = {
      "batch_size": batch_size,
      "prompt_len": prompt_len,
      "sequence_length": length,
      "generated_tokens": generated,
  }
  for name, timed in (
      ("prefill", pre),
      ("decode_loop", loop),
      ("cached", cached),
      ("nocache", nocache),
  ):
    row[f"{name}_compile_s"] = timed["compile_s"]
    row[f"{name}_time_median_s"] = timed["median_s"]
    row[f"{name}_times_s"] = timed["times_s"]
    row[f"{name}_warmup_times_s"] = timed["warmup_times_s"]
    row[f"{name}_program_bytes"] = program_memory(timed["compiled"])
    if name != "prefill":
      row[f"{name}_tokens_per_second"] = generated / timed["median_s"]
  return {
      **row,
      "speedup": speedup,
      "peak_memory_bytes": memory,
      "peak_memory_source": memory_label,
      **check,
  }


def run_benchmark(
    model,
    *,
    batch_sizes: Sequence[int],
    prompt_lens: Sequence[int],
    gen_len: int,
    repeats: int,
    warmup: int = 1,
    match_tol: Optional[float] = None,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
  """Times the decoders at each batch size and prompt length on one device; returns config
  and one result row per (batch size, prompt length), prompt lengths varying fastest."""
  _check_model(model)
  cfg = model.module.config
  if match_tol is None:
    match_tol = (
        FLOAT32_MATCH_TOL if jnp.dtype(cfg.dtype) == jnp.float32 else LOW_PRECISION_MATCH_TOL
    )
  device = jax.devices()[0]
  example = {  # parameter shapes do not depend on the length
      "decoder_input_tokens": np.zeros((1, max(prompt_lens) + gen_len), np.int32),
      "decoder_target_tokens": np.ones((1, max(prompt_lens) + gen_len), np.int32),
  }
  with jax.default_device(device):
    params = jax.jit(lambda rng: nn.unbox(model.init(rng, example)))(jax.random.PRNGKey(seed))
  params = jax.device_put(params, device)
  params_total = int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))

  rng = np.random.default_rng(seed)
  rows = []
  for batch_size in batch_sizes:
    shortest = None
    for prompt_len in prompt_lens:
      prompts = random_prompts(rng, batch_size, prompt_len, model.vocab_size)
      row = _measure(model, params, prompts, gen_len, repeats, warmup, match_tol, device, log)
      shortest = row if shortest is None or prompt_len < shortest["prompt_len"] else shortest
      rows.append(row)
    for row in rows[-len(prompt_lens) :]:  # the loop's growth with the prompt length
      row["decode_loop_time_vs_shortest_prompt"] = (
          row["decode_loop_time_median_s"] / shortest["decode_loop_time_median_s"]
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
      "prompt_lens": list(prompt_lens),
      "gen_len": gen_len,
      "sequence_lengths": [p + gen_len for p in prompt_lens],
      "cached_decode_steps": gen_len,
      "nocache_forward_passes": gen_len,
      "repeats": repeats,
      "warmup": warmup,
      "seed": seed,
      "eos_id": model.eos_id,
      "eos_suppressed": True,
      "match_tol": match_tol,
      "cached": (
          "jax.jit(model.predict_batch), greedy(logit_callback=EOS suppression), KV cache: "
          f"one prefill pass over BOS + prompt, then {gen_len} single-token steps"
      ),
      "prefill": "jax.jit(model.decode_inputs(params, batch).cache)",
      "decode_loop": (
          f"jax.jit(greedy decoder over the {gen_len} steps, from the prefilled cache passed in)"
      ),
      "nocache": (
          f"jax.jit(lax.fori_loop over {gen_len} steps of a full causal forward pass over "
          "prompt_len + gen_len tokens, argmax at the current position)"
      ),
      "speedup_definition": "nocache_time_median_s / cached_time_median_s",
      "min_speedup": min(r["speedup"] for r in rows),
      "max_decode_loop_time_vs_shortest_prompt": max(
          r["decode_loop_time_vs_shortest_prompt"] for r in rows
      ),
      "all_outputs_match": all(r["outputs_match"] for r in rows),
      "any_mismatch_beyond_float_noise": any(r["match_verdict"] == "MISMATCH" for r in rows),
      "results": rows,
  }


def _mib(n: Optional[int]) -> str:
  return "n/a" if n is None else f"{n / 2**20:.1f}"


def format_table(r: dict[str, Any]) -> str:
  """The run's settings, then one line per (batch size, prompt length)."""
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
          f"prompt {', '.join(map(str, r['prompt_lens']))} + generated {r['gen_len']} "
          "(EOS suppressed)",
      ),
      ("timing", f"median of {r['repeats']} after {r['warmup']} warm-up (compile excluded)"),
      (
          "columns",
          "prefill / loop: the cached decoder's two parts timed alone; loop x: loop time / "
          "loop time at the shortest prompt; cached = predict_batch (prefill + loop)",
      ),
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
      "prompt",
      "prefill s",
      "loop s",
      "loop tok/s",
      "loop x",
      "cached s",
      "cached tok/s",
      "no-cache s",
      "no-cache tok/s",
      "speed-up",
      "peak MiB",
      "program MiB",
      "outputs",
  )
  table = [columns]
  for row in r["results"]:
    outputs = row["match_verdict"]
    if not row["loop_outputs_match_cached"]:
      outputs += " (the decode loop alone differs from predict_batch)"
    elif not row["outputs_match"]:
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
            str(row["prompt_len"]),
            f"{row['prefill_time_median_s']:.3f}",
            f"{row['decode_loop_time_median_s']:.3f}",
            f"{row['decode_loop_tokens_per_second']:,.0f}",
            f"{row['decode_loop_time_vs_shortest_prompt']:.2f}",
            f"{row['cached_time_median_s']:.3f}",
            f"{row['cached_tokens_per_second']:,.0f}",
            f"{row['nocache_time_median_s']:.3f}",
            f"{row['nocache_tokens_per_second']:,.0f}",
            f"{row['speedup']:.2f}x",
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
  parser = benchmark_common.new_parser(
      prog="python -m tools.benchmark_decode",
      description="Benchmark cached greedy decoding against a no-cache recompute baseline.",
      epilog="Gin overrides: --gin.NAME=VALUE (repeatable), e.g. "
      "--gin.TransformerConfig.dtype=\"'float32'\".",
  )
  parser.add_argument("--batch_sizes", default="1,8,64", help="comma-separated batch sizes (rows)")
  parser.add_argument(
      "--prompt_len", type=int, default=None, help="random prompt tokens per row (default 32)"
  )
  parser.add_argument(
      "--prompt_lens",
      default=None,
      help="comma-separated prompt lengths to run in turn, e.g. 32,512 (instead of --prompt_len)",
  )
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
  args, bindings = benchmark_common.parse_known_args(parser, argv)
  try:
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
  except ValueError:
    parser.error(
        f"--batch_sizes={args.batch_sizes!r}: expected comma-separated integers, e.g. 1,8,64"
    )
  if not args.batch_sizes or min(args.batch_sizes) < 1:
    parser.error(f"--batch_sizes={args.batch_sizes} must be integers >= 1")
  if args.prompt_lens is None:
    args.prompt_lens = [DEFAULT_PROMPT_LEN if args.prompt_len is None else args.prompt_len]
    flag = "--prompt_len"
  elif args.prompt_len is not None:
    parser.error("--prompt_len and --prompt_lens: give one of them")
  else:
    flag = "--prompt_lens"
    try:
      args.prompt_lens = [int(p) for p in args.prompt_lens.split(",") if p.strip()]
    except ValueError:
      parser.error(
          f"--prompt_lens={args.prompt_lens!r}: expected comma-separated integers, e.g. 32,512"
      )
    if not args.prompt_lens:
      parser.error("--prompt_lens is empty: expected comma-separated integers, e.g. 32,512")
  if min(args.prompt_lens) < 1:
    parser.error(f"{flag}={','.join(map(str, args.prompt_lens))} must be >= 1")
  for name in ("gen_len", "repeats"):
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


def _run(args: argparse.Namespace, model) -> dict[str, Any]:
  return run_benchmark(
      model,
      batch_sizes=args.batch_sizes,
      prompt_lens=args.prompt_lens,
      gen_len=args.gen_len,
      repeats=args.repeats,
      warmup=args.warmup,
      match_tol=args.match_tol,
      seed=args.seed,
      log=lambda s: print(s, file=sys.stderr, flush=True),
  )


def _exit_code(results: dict[str, Any]) -> int:
  if results["any_mismatch_beyond_float_noise"]:
    print(
        "ERROR: cached and no-cache greedy decoding disagree beyond float noise (see "
        "match_verdict); the KV-cache path does not compute the same model.",
        file=sys.stderr,
        flush=True,
    )
    return 1
  return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
  return benchmark_common.run_main(
      argv, _parse_args, _load_model, _run, format_table, packages=("flax",), exit_code=_exit_code
  )


if __name__ == "__main__":
  sys.exit(main())
