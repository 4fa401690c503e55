"""Decoding benchmark: tokens/s of the model's own KV-cached decoders (greedy, sampling, beam
search), and cached greedy decoding against a no-cache recompute baseline, which checks the
KV cache.

  python -m tools.benchmark_decode --gin_file=gin/models/decoder_only_tiny.gin \
      [--gin_file=...] [--gin.NAME=VALUE ...] [--batch_sizes 1,8,64] \
      [--prompt_len 32 | --prompt_lens 32,512] [--gen_len 32] [--repeats 3] [--warmup 1] \
      [--temperature 1.0] [--top_p 0.9] [--beam_size 4] [--nocache_max_batch 1] \
      [--split_prefill] [--json_out FILE] [--match_tol X] [--seed 0]

On a CPU add --gin.TransformerConfig.dtype="'float32'" (CPUs have no fast bf16). With the
tiny model the defaults take under a minute on 2 CPU cores, most of it XLA compiling.

Decoder-only models only. Only the core is used (jax, flax, gin-config; no TensorFlow or
SeqIO), so this runs on an accelerator machine without the [tasks] extra. The model comes
from gin (the MODEL macro); its parameters are freshly initialised (--seed), and everything
runs under plain `jax.jit` on one device (jax.devices()[0]; no mesh).

For each batch size and each prompt length (--prompt_lens, or the single --prompt_len), in
one run and on the same parameters and prompts (uniform random tokens in [2, vocab),
prompt_len of them per row), every decoder generates exactly --gen_len tokens per row. End of
sequence can not stop any of them: each decoder's logit callback gives the EOS id (the
model's eos_id, 1) log-probability -1e30 before it chooses.

The three decoders are `jax.jit(model.predict_batch)` with a decoder of model_zoo.decoding,
on a prefix-LM batch of length prompt_len + gen_len built by
`DecoderFeatureConverter.prompt_batch` (the prompt is marked by decoder_causal_attention).
`model.decode_inputs` prefills BOS + prompt into the KV cache in one pass; the decode loop
then runs gen_len single-token steps, whatever the prompt length. Each returns the best
sequence per example and its score, the summed log-probabilities of its tokens (after EOS
suppression; untempered and unfiltered for sampling).
  * greedy ("cached" in the JSON): `sampling.greedy`.
  * sampling: `sampling.Sampling(temperature=--temperature, top_p=--top_p)`, one sample per
    row, drawn with the key `jax.random.PRNGKey(--seed)` in every call: a run draws the same
    tokens each call, and again when rerun with the same seed on the same backend.
  * beam ("beam4" in the table at the default --beam_size 4): `beam_search.BeamSearch(
    beam_size=--beam_size, alpha=0)`. predict_batch repeats each row beam_size times, so a
    step runs batch x beam_size rows; the best of the beam_size finished hypotheses is
    returned. With EOS suppressed every hypothesis ends at gen_len tokens, where the length
    penalty would divide all of an example's scores by one constant and rank them alike;
    alpha 0 keeps its score the summed log-probabilities, comparable with greedy's.
Besides, for the prompt-length study and the KV cache's check:
  * prefill / decode loop (with --split_prefill): greedy's two parts, timed on their own as
    two programs:
      - prefill: `model.decode_inputs(params, batch).cache` (the prompt's forward pass);
      - decode loop: the greedy decoder on decode_inputs with that prefilled cache passed
        in (XLA drops the unused prefill), so it times the gen_len steps alone. Its tokens
        must equal predict_batch's ("loop_outputs_match_cached").
    The loop runs gen_len steps whatever the prompt length. What still grows with the prompt
    is each step's own cost: attention reads the whole fixed-length cache buffer
    (prompt_len + gen_len positions, masked), so "loop x" above 1 at a long prompt is that
    per-step cost, not extra steps.
  * no-cache (at batch sizes <= --nocache_max_batch, default 1; 0: never): greedy decoding
    without a cache, one `jax.jit` holding a `lax.fori_loop` over the gen_len steps; step t
    runs the model's full forward pass over the whole fixed-length (prompt_len + gen_len)
    sequence buffer, [BOS, prompt, generated so far, padding], and takes the argmax at
    position t. The buffer is attended causally everywhere (no decoder_causal_attention), as
    a causal LM (DecoderOnlyModel's default feature converter, "decoder") prefills its
    prompt; a prefix LM's bidirectional prompt would be another model function, which this
    baseline does not compute. Its cost grows as batch x gen_len x (prompt_len + gen_len)
    (the tiny model's 4 calls at batch 64 would add ~17 s to the default run on 2 CPU cores,
    at batch 8 ~3 s with the compile), so by default it runs at batch 1 alone: the exact
    check of the cache there, the teacher-forced checks below at every batch size.

Measured per program: the compile (jit lower + XLA compile, ahead of time, so no timed call
compiles), --warmup untimed calls, then --repeats timed calls each ended by
`jax.block_until_ready`; the median is reported (and every time).
  * tokens/s = batch * gen_len / median time, for every decoder: generated tokens only, and
    per example (beam search steps batch x beam_size hypotheses but returns one sequence per
    example); a cached decoder's prefill is part of its time, not of the decode loop's.
  * loop x (--split_prefill) = the decode loop's median time / its median time at the
    shortest prompt length of the same batch size (1.00 when flat in the prompt length).
  * speed-up = no-cache median time / greedy median time (= greedy tokens/s / no-cache
    tokens/s).
  * log-prob per token: a decoder's score / gen_len, averaged over the rows.
    beam_minus_greedy_min: the least, over the rows, of beam's score - greedy's (nats). It
    is >= 0 up to float noise when gen_len <= 2 (beam keeps the beam_size best first tokens,
    greedy's among them, and its last step ranks every continuation of those); beyond, beam
    search may prune the greedy path and end below it, so this is reported, not checked.
    argmax fraction (sampling, beam): the share of their tokens that were the most likely
    one at their step (within --match_tol, by the teacher-forced pass below).
  * memory: the compiled program's buffers (XLA memory_analysis: arguments + outputs +
    temporaries - aliased; parameters included) for each program; and the process peak
    so far, after every program of that row has run: max over local devices of
    memory_stats()["peak_bytes_in_use"] where the backend reports it (GPU, TPU), else the
    process's maximum resident set size, labelled "host RSS". Both peaks are never reset, so
    they include every earlier batch size and prompt length.

Outputs check: each decoder's tokens are scored by one teacher-forced full forward pass over
[BOS, prompt, tokens] (EOS suppressed), which gives float-noise measures, each held to
--match_tol (default 1e-3 nats for float32 activations, 0.05 otherwise):
  * greedy gap (greedy and no-cache): at every generated position, best log-prob - the
    chosen token's log-prob;
  * score error (every decoder): |the decoder's own score - the teacher-forced sum| /
    gen_len. This one checks the KV-cache path's log-probabilities themselves, not only
    their argmax (and, for beam search, that reordering the cache rows keeps each hypothesis'
    history): a randomly initialised model with tied embeddings mostly repeats the last
    prompt token (the residual stream carries the input embedding onto its own logit), so
    equal tokens alone say little about the cache (distinct_generated_tokens_per_row shows
    how varied greedy's are).
Where the no-cache baseline runs, its tokens and greedy's are also compared exactly ("outputs
match"). The verdict is "identical" (same tokens, all measures within tolerance), "differ
within float noise" (a near tie broken differently, after which the continuations part),
"consistent" (no baseline at this batch size, all measures within tolerance) or "MISMATCH"
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
from model_zoo.decoding import beam_search, sampling
from model_zoo.feature_converters import DecoderFeatureConverter

NEG_INF = -1e30
DEFAULT_PROMPT_LEN = 32
DEFAULT_GEN_LEN = 32
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 0.9
DEFAULT_BEAM_SIZE = 4
DEFAULT_NOCACHE_MAX_BATCH = 1
FLOAT32_MATCH_TOL = 1e-3  # nats
LOW_PRECISION_MATCH_TOL = 0.05
DECODERS = ("cached", "sampling", "beam")  # the JSON names, in the table's order

_configured_model = benchmark_common.model_configurable("benchmark_decode")


# --- the decoders ------------------------------------------------------------------------------
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


def greedy_decoder(model) -> sampling.Sampling:
  """Greedy decoding with EOS suppressed: the "cached" decoder, and the decode loop's."""
  return sampling.greedy(logit_callback=suppress_eos(model.eos_id))


def decoders(
    model, *, temperature: float, top_p: float, beam_size: int
) -> dict[str, Callable[..., Any]]:
  """The benchmarked model_zoo decoders by JSON name (DECODERS), each with EOS suppressed."""
  no_eos = suppress_eos(model.eos_id)
  return {
      "cached": greedy_decoder(model),
      "sampling": sampling.Sampling(temperature=temperature, top_p=top_p, logit_callback=no_eos),
      # alpha 0: every hypothesis has gen_len tokens, so a length penalty would not re-rank.
      "beam": beam_search.BeamSearch(beam_size=beam_size, alpha=0.0, logit_callback=no_eos),
  }


def predictor(model, decoder: Callable[..., Any]) -> Callable[..., tuple[jax.Array, jax.Array]]:
  """(params, batch[, rng]) -> (tokens [B, L], scores [B]): model.predict_batch with `decoder`,
  the best sequence per example."""
  return functools.partial(model.predict_batch, decoder=decoder)


def prefill(model) -> Callable[[Any, Any], Any]:
  """(params, batch) -> the KV cache with BOS + prompt prefilled (decode_inputs' one pass)."""
  return lambda params, batch: model.decode_inputs(params, batch).cache


def decode_loop(model) -> Callable[[Any, Any, Any], tuple[jax.Array, jax.Array]]:
  """(params, batch, prefilled cache) -> (tokens [B, L], scores [B]): the cached decoder's loop
  alone, started from a cache `prefill` made (decode_inputs' own prefill goes unused, and
  XLA removes it from the compiled program)."""
  decoder = greedy_decoder(model)

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
def compile_program(fn: Callable[..., Any], *args) -> tuple[Any, float]:
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


def compare_outputs(outputs: dict[str, dict[str, np.ndarray]], tol: float) -> dict[str, Any]:
  """The float-noise measures, the exact token comparison and the verdict (see the module
  docstring).

  `outputs` maps a decoder's JSON name ("cached" always; "sampling", "beam" and "nocache"
  where they ran) to its "tokens" [B, G] and "scores" [B], and "gaps" and "log_probs" [B, G]
  from `teacher_forced` on those tokens.
  """
  cached = outputs["cached"]
  gen_len = cached["tokens"].shape[1]
  out, measures = {}, []
  for name, d in outputs.items():
    out[f"{name}_log_prob_per_token"] = float(np.mean(d["scores"])) / gen_len
    # The decoder's own scores against the teacher-forced full forward pass.
    error = float(np.max(np.abs(d["scores"] - d["log_probs"].sum(axis=1)))) / gen_len
    out[f"{name}_score_error_per_token"] = error
    measures.append(error)
    if name in ("cached", "nocache"):  # greedy: every chosen token must be the best one
      out[f"{name}_greedy_max_gap"] = float(np.max(d["gaps"]))
      measures.append(out[f"{name}_greedy_max_gap"])
    else:
      out[f"{name}_argmax_fraction"] = float(np.mean(d["gaps"] <= tol))
  if "beam" in outputs:
    out["beam_minus_greedy_min"] = float(np.min(outputs["beam"]["scores"] - cached["scores"]))
  out["distinct_generated_tokens_per_row"] = float(np.mean([len(set(r)) for r in cached["tokens"]]))
  if "nocache" in outputs:
    equal = cached["tokens"] == outputs["nocache"]["tokens"]
    rows_equal = np.all(equal, axis=1)
    first = [int(np.argmax(row)) for row in ~equal if row.any()]
    out["outputs_match"] = bool(rows_equal.all())
    out["matching_rows"] = int(rows_equal.sum())
    out["matching_tokens_fraction"] = float(equal.mean())
    out["first_mismatch_step"] = min(first) if first else None
  if max(measures) > tol:
    out["match_verdict"] = "MISMATCH"
  elif "nocache" not in outputs:
    out["match_verdict"] = "consistent"
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


def timed_program(fn, args: tuple, repeats: int, warmup: int) -> dict[str, Any]:
  """Compiles `fn` for `args` ahead of time, then times it: compile, times, median, output."""
  compiled, compile_s = compile_program(fn, *args)
  warmup_times, times, out = _timed_calls(compiled, args, repeats, warmup)
  return {
      "compiled": compiled,
      "compile_s": compile_s,
      "warmup_times_s": warmup_times,
      "times_s": times,
      "median_s": benchmark_common.percentile(times, 50),
      "out": out,
  }


@dataclasses.dataclass(frozen=True)
class _Settings:
  """What every (batch size, prompt length) row of a run shares."""

  gen_len: int
  repeats: int
  warmup: int
  match_tol: float
  decoders: dict[str, Callable[..., Any]]
  rng: jax.Array  # every decoder's key (only sampling draws from it), the same each call
  nocache_max_batch: int
  split_prefill: bool


def _measure(
    model, params, prompts: np.ndarray, s: _Settings, device, log: Callable[[str], None]
) -> dict[str, Any]:
  """One (batch size, prompt length) row: each program timed, then the outputs check."""
  batch_size, prompt_len = prompts.shape
  length = prompt_len + s.gen_len
  batch = jax.device_put(DecoderFeatureConverter.prompt_batch(prompts, batch_size, length), device)
  prompts_on_device = jax.device_put(prompts, device)
  rng = jax.device_put(s.rng, device)
  where = f"batch {batch_size}, prompt {prompt_len}"
  timed = {}

  def time_program(name: str, fn: Callable[..., Any], *args) -> None:
    log(f"{where}: {name} ({s.warmup} warm-up + {s.repeats} timed)")
    timed[name] = timed_program(fn, args, s.repeats, s.warmup)

  for name, decoder in s.decoders.items():
    time_program(name, predictor(model, decoder), params, batch, rng)
  if s.split_prefill:
    time_program("prefill", prefill(model), params, batch)
    time_program("decode_loop", decode_loop(model), params, batch, timed["prefill"]["out"])
  if batch_size <= s.nocache_max_batch:
    time_program("nocache", nocache_decoder(model, s.gen_len), params, prompts_on_device)
  memory, memory_label = benchmark_common.peak_memory()

  score_fn = jax.jit(teacher_forced(model))
  outputs = {}
  for name in (*s.decoders, "nocache"):
    if name in timed:
      tokens, scores = jax.device_get(timed[name]["out"])
      tokens = tokens[:, : s.gen_len]  # predict_batch pads the continuation to the length
      gaps, log_probs = jax.device_get(score_fn(params, prompts_on_device, tokens))
      outputs[name] = {"tokens": tokens, "scores": scores, "gaps": gaps, "log_probs": log_probs}
  check = compare_outputs(outputs, s.match_tol)
  if s.split_prefill:
    loop_tokens, loop_scores = jax.device_get(timed["decode_loop"]["out"])
    cached_tokens, cached_scores = jax.device_get(timed["cached"]["out"])
    check["loop_outputs_match_cached"] = bool(
        np.array_equal(loop_tokens, cached_tokens)
        and np.allclose(loop_scores, cached_scores, rtol=0, atol=s.match_tol * s.gen_len)
    )
    if not check["loop_outputs_match_cached"]:
      check["match_verdict"] = "MISMATCH"
  log(
      f"{where}: "
      + ", ".join(f"{name} {t['median_s']:.3f} s" for name, t in timed.items())
      + f"; outputs {check['match_verdict']}"
  )

  generated = batch_size * s.gen_len
  row = {
      "batch_size": batch_size,
      "prompt_len": prompt_len,
      "sequence_length": length,
      "generated_tokens": generated,
  }
  for name, t in timed.items():
    row[f"{name}_compile_s"] = t["compile_s"]
    row[f"{name}_time_median_s"] = t["median_s"]
    row[f"{name}_times_s"] = t["times_s"]
    row[f"{name}_warmup_times_s"] = t["warmup_times_s"]
    row[f"{name}_program_bytes"] = program_memory(t["compiled"])
    if name != "prefill":
      row[f"{name}_tokens_per_second"] = generated / t["median_s"]
  if "nocache" in timed:
    row["speedup"] = timed["nocache"]["median_s"] / timed["cached"]["median_s"]
  return {**row, "peak_memory_bytes": memory, "peak_memory_source": memory_label, **check}


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
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = DEFAULT_TOP_P,
    beam_size: int = DEFAULT_BEAM_SIZE,
    nocache_max_batch: int = DEFAULT_NOCACHE_MAX_BATCH,
    split_prefill: bool = False,
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
  settings = _Settings(
      gen_len=gen_len,
      repeats=repeats,
      warmup=warmup,
      match_tol=match_tol,
      decoders=decoders(model, temperature=temperature, top_p=top_p, beam_size=beam_size),
      rng=jax.random.PRNGKey(seed),
      nocache_max_batch=nocache_max_batch,
      split_prefill=split_prefill,
  )

  rng = np.random.default_rng(seed)
  rows = []
  for batch_size in batch_sizes:
    for prompt_len in prompt_lens:
      prompts = random_prompts(rng, batch_size, prompt_len, model.vocab_size)
      rows.append(_measure(model, params, prompts, settings, device, log))
    if split_prefill:  # the loop's growth with the prompt length
      shortest = min(rows[-len(prompt_lens) :], key=lambda row: row["prompt_len"])
      for row in rows[-len(prompt_lens) :]:
        row["decode_loop_time_vs_shortest_prompt"] = (
            row["decode_loop_time_median_s"] / shortest["decode_loop_time_median_s"]
        )
  speedups = [r["speedup"] for r in rows if "speedup" in r]
  compared = [r["outputs_match"] for r in rows if "outputs_match" in r]

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
      "temperature": temperature,
      "top_p": top_p,
      "beam_size": beam_size,
      "beam_alpha": 0.0,
      "nocache_max_batch": nocache_max_batch,
      "nocache_batch_sizes": [b for b in batch_sizes if b <= nocache_max_batch],
      "split_prefill": split_prefill,
      "cached": (
          "jax.jit(model.predict_batch), greedy(logit_callback=EOS suppression), KV cache: "
          f"one prefill pass over BOS + prompt, then {gen_len} single-token steps"
      ),
      "sampling": (
          f"the same with Sampling(temperature={temperature}, top_p={top_p}), one sample per "
          f"row, key jax.random.PRNGKey({seed}) in every call"
      ),
      "beam": (
          f"the same with BeamSearch(beam_size={beam_size}, alpha=0): batch x {beam_size} rows "
          "per step, the best finished hypothesis per example"
      ),
      "prefill": "jax.jit(model.decode_inputs(params, batch).cache)",
      "decode_loop": (
          f"jax.jit(greedy decoder over the {gen_len} steps, from the prefilled cache passed in)"
      ),
      "nocache": (
          f"jax.jit(lax.fori_loop over {gen_len} steps of a full causal forward pass over "
          "prompt_len + gen_len tokens, argmax at the current position)"
      ),
      "tokens_per_second_definition": "batch_size * gen_len / median time (every decoder)",
      "speedup_definition": "nocache_time_median_s / cached_time_median_s",
      "min_speedup": min(speedups) if speedups else None,
      "max_decode_loop_time_vs_shortest_prompt": (
          max(r["decode_loop_time_vs_shortest_prompt"] for r in rows) if split_prefill else None
      ),
      "all_outputs_match": all(compared) if compared else None,
      "any_mismatch_beyond_float_noise": any(r["match_verdict"] == "MISMATCH" for r in rows),
      "results": rows,
  }


def _mib(n: Optional[int]) -> str:
  return "n/a" if n is None else f"{n / 2**20:.1f}"


def format_table(r: dict[str, Any]) -> str:
  """The run's settings, then one line per (batch size, prompt length)."""
  beam = f"beam{r['beam_size']}"
  nocache = ", ".join(map(str, r["nocache_batch_sizes"])) or "none"
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
      (
          "decoders",
          f"model.predict_batch, KV cache: greedy; sampling (temperature {r['temperature']}, "
          f"top-p {r['top_p']}, seed {r['seed']}); {beam} (beam search, {r['beam_size']} beams, "
          "alpha 0, the best kept)",
      ),
      (
          "no-cache",
          f"greedy recomputing the whole sequence each step, at batch {nocache} "
          f"(<= --nocache_max_batch {r['nocache_max_batch']}); speed-up = its time / greedy's",
      ),
      (
          "timing",
          f"median of {r['repeats']} after {r['warmup']} warm-up (compile excluded); tok/s = "
          "batch x generated / time",
      ),
      (
          "log p / token",
          f"mean log-prob per generated token of greedy / sampling / {beam}'s tokens",
      ),
  ]
  if r["split_prefill"]:
    header.append(
        (
            "prefill, loop",
            "greedy's two parts timed alone; loop x: loop time / loop time at the shortest "
            "prompt",
        )
    )
  header.append(
      (
          "memory",
          f"peak = {r['results'][0]['peak_memory_source']}, so far; program = XLA buffers "
          f"per decoder (greedy / sampling / {beam} / no-cache)",
      )
  )
  width = max(len(k) for k, _ in header)
  lines = [f"{k.ljust(width)} | {v}" for k, v in header]

  def number(row: dict[str, Any], key: str, fmt: str) -> str:
    return "-" if row.get(key) is None else format(row[key], fmt)

  columns = ["batch", "prompt", "greedy tok/s", "sampling tok/s", f"{beam} tok/s"]
  columns += ["no-cache tok/s", "speed-up"]
  if r["split_prefill"]:
    columns += ["prefill s", "loop s", "loop tok/s", "loop x"]
  columns += ["log p / token", "peak MiB", "program MiB", "outputs"]
  table = [columns]
  for row in r["results"]:
    outputs = row["match_verdict"]
    if not row.get("loop_outputs_match_cached", True):
      outputs += " (the decode loop alone differs from predict_batch)"
    elif row.get("outputs_match") is False:
      outputs += (
          f" ({row['matching_rows']}/{row['batch_size']} rows equal, first at step "
          f"{row['first_mismatch_step']}, gaps {row['cached_greedy_max_gap']:.2g} / "
          f"{row['nocache_greedy_max_gap']:.2g})"
      )
    elif outputs == "identical":
      outputs = "match"
    cells = [str(row["batch_size"]), str(row["prompt_len"])]
    cells += [number(row, f"{name}_tokens_per_second", ",.0f") for name in (*DECODERS, "nocache")]
    cells.append("-" if "speedup" not in row else f"{row['speedup']:.2f}x")
    if r["split_prefill"]:
      cells += [
          f"{row['prefill_time_median_s']:.3f}",
          f"{row['decode_loop_time_median_s']:.3f}",
          f"{row['decode_loop_tokens_per_second']:,.0f}",
          f"{row['decode_loop_time_vs_shortest_prompt']:.2f}",
      ]
    cells.append(" / ".join(f"{row[f'{name}_log_prob_per_token']:.2f}" for name in DECODERS))
    cells.append(_mib(row["peak_memory_bytes"]))
    cells.append(
        " / ".join(
            _mib(row[f"{name}_program_bytes"]) if f"{name}_program_bytes" in row else "-"
            for name in (*DECODERS, "nocache")
        )
    )
    cells.append(outputs)
    table.append(cells)
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
      description="Benchmark the model's KV-cached greedy, sampling and beam-search decoding, "
      "and cached greedy decoding against a no-cache recompute baseline.",
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
  parser.add_argument(
      "--gen_len", type=int, default=DEFAULT_GEN_LEN, help="generated tokens per row"
  )
  parser.add_argument("--repeats", type=int, default=3, help="timed calls per program (median)")
  parser.add_argument(
      "--warmup",
      type=int,
      default=1,
      help="untimed calls per program (compiles happen ahead of time and are never timed)",
  )
  parser.add_argument(
      "--temperature", type=float, default=DEFAULT_TEMPERATURE, help="sampling's temperature"
  )
  parser.add_argument(
      "--top_p", type=float, default=DEFAULT_TOP_P, help="sampling's nucleus (1: no filter)"
  )
  parser.add_argument(
      "--beam_size", type=int, default=DEFAULT_BEAM_SIZE, help="beam search's beams"
  )
  parser.add_argument(
      "--nocache_max_batch",
      type=int,
      default=DEFAULT_NOCACHE_MAX_BATCH,
      help="run the no-cache baseline (and the exact token check) at batch sizes up to this "
      f"(default {DEFAULT_NOCACHE_MAX_BATCH}; 0: never): its time grows with batch x gen_len x "
      "length",
  )
  parser.add_argument(
      "--split_prefill",
      action="store_true",
      help="also time greedy's prefill and decode loop apart (loop x: the loop's growth with "
      "the prompt length)",
  )
  parser.add_argument(
      "--match_tol",
      type=float,
      default=None,
      help="log-prob tolerance (nats) of the greedy check (default: 1e-3 for float32 "
      "activations, else 0.05)",
  )
  parser.add_argument("--json_out", default=None, help="write the results here (default: stdout)")
  parser.add_argument("--seed", type=int, default=0, help="parameters, prompts and sampling's key")
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
  benchmark_common.require_positive(parser, args, ("gen_len", "repeats", "beam_size"))
  for name in ("warmup", "nocache_max_batch", "temperature"):
    if getattr(args, name) < 0:
      parser.error(f"--{name}={getattr(args, name)} must be >= 0")
  if not 0 < args.top_p <= 1:
    parser.error(f"--top_p={args.top_p} must be in (0, 1]")
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
      temperature=args.temperature,
      top_p=args.top_p,
      beam_size=args.beam_size,
      nocache_max_batch=args.nocache_max_batch,
      split_prefill=args.split_prefill,
      log=lambda s: print(s, file=sys.stderr, flush=True),
  )


def _exit_code(results: dict[str, Any]) -> int:
  if results["any_mismatch_beyond_float_noise"]:
    print(
        "ERROR: a decoder's tokens or scores disagree with the model's full forward pass beyond "
        "float noise (see match_verdict): the KV-cache path does not compute the same model.",
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
