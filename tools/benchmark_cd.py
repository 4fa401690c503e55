"""Controlled-decoding benchmark: tokens/s of token-wise and blockwise CD against plain sampling
at the same batch, and where CD's time goes.

  python -m tools.benchmark_cd --gin_file=gin/models/decoder_only_tiny.gin \
      [--gin.NAME=VALUE ...] [--batch 8] [--prompt_len 32] [--gen_len 32] [--repeats 5] \
      [--warmup 1] [--num_samples 4] [--block_length 4] [--json_out FILE] [--seed 0]

On a CPU add --gin.TransformerConfig.dtype="'float32'" (CPUs have no fast bf16).

The base LM comes from gin (the MODEL macro, decoder-only); each prefix scorer is a
PrefixScorerModel with the base model's TransformerConfig (a scorer the base model's size).
Every model has fresh random parameters (--seed), and everything runs under plain `jax.jit` on
one device. The issue's target: token-wise CD with one such scorer at most 2x the time of plain
sampling.

Programs, each `model.predict_batch` on the same random prompts (tokens in [2, vocab)) with the
same key, each row generating exactly --gen_len tokens:
  * sampling: the base model with `Sampling()` (temperature 1, no filter), one row per example.
  * scorer_alone: the scorer's own decode loop, sampling from its values as if logits: what the
    second model costs on its own.
  * tokenwise: `TokenwiseCD` with one scorer; tokenwise_2: with two (multi-objective).
  * blockwise: `BlockwiseCD(num_samples=K, block_length=M)`: batch x K rows.
  * best_of_k: `BestOfK` with the same K (reward: the count of token 2): batch x K rows of the
    base model alone, so blockwise - best_of_k is the scorer plus the regrouping.
A decoder's scorer parameters are arguments of its jitted program (`with_params`), as the base
model's are, not constants folded into it.

Fixed lengths: every model's decode step gives EOS logit -1e30 (`without_eos`), so no row ends
early and all programs decode batch x gen_len tokens. The controlled decoders take no logit
callback, so the suppression is in the model's step instead, for every program alike (one
scatter per step). For token-wise CD it is in the base model's logits, which the scorer values
are added to, so EOS stays impossible.

Timing: each program is compiled ahead of time; then the programs take turns call by call
(`benchmark_train.time_alternating`: --warmup untimed rounds, the first included, then --repeats
timed rounds), so a change in the machine's load falls on all of them alike. Reported: the median
time; tokens/s = batch x gen_len / median (output tokens, whatever the rows decoded); ratio = a
program's median / sampling's median. Where the time goes: tokenwise ~ sampling + scorer_alone +
combination overhead (the remainder; tokenwise_2 counts scorer_alone twice).
"""

import argparse
import copy
import dataclasses
import os
import sys
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from model_zoo import models, prefix_scorer
from model_zoo.decoding import controlled, sampling
from model_zoo.errors import ConfigError
from model_zoo.feature_converters import DecoderFeatureConverter
from tools import benchmark_common, benchmark_decode, benchmark_train

PROGRAMS = ("sampling", "scorer_alone", "tokenwise", "tokenwise_2", "blockwise", "best_of_k")
TARGET_RATIO = 2.0  # token-wise CD's time / plain sampling's, at most
REWARD_TOKEN = 2

_configured_model = benchmark_common.model_configurable("benchmark_cd")


# --- the programs ------------------------------------------------------------------------------
def without_eos(model):
  """A shallow copy of `model` whose decode steps give EOS logit -1e30: rows never end early.

  The controlled decoders take no logit callback, so this is the one way that holds for every
  decoder alike (tokenwise CD adds the values to the base model's log-probs, still -1e30).
  """
  original, no_eos = model.decode_inputs, benchmark_decode.suppress_eos(model.eos_id)

  def decode_inputs(params, batch):
    inputs = original(params, batch)

    def tokens_to_logits(token, cache):
      logits, cache = inputs.tokens_to_logits(token, cache)
      return no_eos(logits), cache

    return dataclasses.replace(inputs, tokens_to_logits=tokens_to_logits)

  wrapped = copy.copy(model)
  wrapped.decode_inputs = decode_inputs  # shadows the method for predict_batch
  return wrapped


def scorer_like(model) -> prefix_scorer.PrefixScorerModel:
  """A prefix scorer with `model`'s TransformerConfig and EOS id: the base model's size."""
  return prefix_scorer.PrefixScorerModel(
      prefix_scorer.PrefixScorerLM(model.module.config), eos_id=model.eos_id
  )


def init_params(model, seed: int, length: int, device) -> Any:
  """Fresh parameters on `device` (their shapes need token features only)."""
  example = {
      "decoder_input_tokens": np.zeros((1, length), np.int32),
      "decoder_target_tokens": np.ones((1, length), np.int32),
  }
  with jax.default_device(device):
    params = jax.jit(lambda rng: nn.unbox(model.init(rng, example)))(jax.random.PRNGKey(seed))
  return jax.device_put(params, device)


def token_count_reward(sequences: jax.Array, room: jax.Array) -> jax.Array:
  """Best-of-K's cheap reward: how often REWARD_TOKEN was generated."""
  del room  # sequences are 0 past each row's end
  return jnp.sum(sequences == REWARD_TOKEN, axis=1).astype(jnp.float32)


def predictor(model, decoder) -> Callable[..., tuple[jax.Array, jax.Array]]:
  """(params, scorer params, batch, rng) -> (tokens [B, L], scores [B]): predict_batch, with the
  decoder's scorer parameters as arguments (None for decoders without scorers)."""

  def predict(params, scorer_params, batch, rng):
    here = controlled.with_decoder_params(decoder, scorer_params)
    return model.predict_batch(params, batch, rng, decoder=here)

  return predict


def programs(
    model, scorer, params, scorer_params: Sequence[Any], *, num_samples: int, block_length: int
) -> dict[str, tuple[Callable[..., Any], Any, tuple]]:
  """{name: (predict function, its params, its decoder's scorer params)} in PROGRAMS order."""
  base, scorer_no_eos = without_eos(model), without_eos(scorer)
  one = [controlled.PrefixScorer(scorer, scorer_params[0])]
  two = one + [controlled.PrefixScorer(scorer, scorer_params[1])]
  decoders = {
      "tokenwise": controlled.TokenwiseCD(scorers=one),
      "tokenwise_2": controlled.TokenwiseCD(scorers=two),
      "blockwise": controlled.BlockwiseCD(
          scorers=one, num_samples=num_samples, block_length=block_length
      ),
      "best_of_k": controlled.BestOfK(reward=token_count_reward, num_samples=num_samples),
  }
  out = {
      "sampling": (predictor(base, sampling.Sampling()), params, None),
      "scorer_alone": (predictor(scorer_no_eos, sampling.Sampling()), scorer_params[0], None),
  }
  for name, decoder in decoders.items():
    out[name] = (predictor(base, decoder), params, controlled.decoder_params(decoder))
  return out


# --- the measurement ---------------------------------------------------------------------------
def _time_side_by_side(compiled: dict[str, tuple[Any, tuple]], repeats: int, warmup: int):
  """{name: (first call s, timed times, last output)}: the programs take turns call by call."""

  def step(fn, args):
    def call(i):
      del i
      out = fn(*args)
      return out, lambda: out

    return call

  contenders = {name: step(fn, args) for name, (fn, args) in compiled.items()}
  return benchmark_train.time_alternating(contenders, repeats, warmup - 1)


def _breakdown(median: dict[str, float]) -> dict[str, Any]:
  """Where CD's time goes: the base loop, the scorer's loop(s), and the combination (the rest)."""
  base, scorer = median["sampling"], median["scorer_alone"]
  out = {}
  for name, scorers in (("tokenwise", 1), ("tokenwise_2", 2)):
    overhead = median[name] - base - scorers * scorer
    out[name] = {
        "base_loop_s": base,
        "scorer_loops_s": scorers * scorer,
        "combination_overhead_s": overhead,
        "base_share": base / median[name],
        "scorer_share": scorers * scorer / median[name],
        "overhead_share": overhead / median[name],
    }
  out["blockwise"] = {  # both decode batch x K rows of the base model
      "best_of_k_s": median["best_of_k"],
      "scorer_and_regrouping_s": median["blockwise"] - median["best_of_k"],
  }
  return out


def run_benchmark(
    model,
    *,
    batch: int,
    prompt_len: int,
    gen_len: int,
    repeats: int,
    warmup: int,
    num_samples: int,
    block_length: int,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
  """Times every program of PROGRAMS side by side on one device; returns settings and results."""
  if not isinstance(model, models.DecoderOnlyModel):
    raise ConfigError(
        f"benchmark_cd needs a decoder-only base model (MODEL = @DecoderOnlyModel()); the gin "
        f"files give {type(model).__name__}."
    )
  device, length = jax.devices()[0], prompt_len + gen_len
  scorer = scorer_like(model)
  params = init_params(model, seed, length, device)
  scorer_params = [init_params(scorer, seed + i, length, device) for i in (1, 2)]
  prompts = benchmark_decode.random_prompts(
      np.random.default_rng(seed), batch, prompt_len, model.vocab_size
  )
  inputs = jax.device_put(DecoderFeatureConverter.prompt_batch(prompts, batch, length), device)
  rng = jax.device_put(jax.random.PRNGKey(seed), device)
  compiled, compile_s = {}, {}
  progs = programs(
      model, scorer, params, scorer_params, num_samples=num_samples, block_length=block_length
  )
  for name, (fn, fn_params, decoder_params) in progs.items():
    log(f"compiling {name}")
    args = (fn_params, decoder_params, inputs, rng)
    fn_compiled, compile_s[name] = benchmark_decode.compile_program(fn, *args)
    compiled[name] = (fn_compiled, args)
  log(f"timing {len(compiled)} programs side by side ({warmup} warm-up + {repeats} rounds)")
  timed = _time_side_by_side(compiled, repeats, warmup)
  median = {name: benchmark_common.percentile(t[1], 50) for name, t in timed.items()}
  output_tokens = batch * gen_len
  rows_per_example = {"blockwise": num_samples, "best_of_k": num_samples}
  results, outputs = {}, {}
  for name, (first_s, times, out) in timed.items():
    tokens = np.asarray(out[0])[:, :gen_len]
    outputs[name] = tokens.tolist()
    results[name] = {
        "rows_decoded": batch * rows_per_example.get(name, 1),
        "output_tokens": output_tokens,
        "compile_s": compile_s[name],
        "first_call_s": first_s,
        "times_s": times,
        "time_median_s": median[name],
        "tokens_per_second": output_tokens / median[name],
        "ratio_vs_sampling": median[name] / median["sampling"],
        "fixed_length": bool(np.all(tokens != model.eos_id)),
    }
  ratio = results["tokenwise"]["ratio_vs_sampling"]
  cfg = model.module.config
  return {
      "model": type(model).__name__,
      "dtype": cfg.dtype,
      "params_total": _size(params),
      "scorer_params_total": _size(scorer_params[0]),
      "platform": device.platform,
      "device_kind": device.device_kind,
      "jax_version": jax.__version__,
      "batch": batch,
      "prompt_len": prompt_len,
      "gen_len": gen_len,
      "repeats": repeats,
      "warmup": warmup,
      "num_samples": num_samples,
      "block_length": block_length,
      "seed": seed,
      "eos_id": model.eos_id,
      "eos_suppression": "every model's decode step sets the EOS logit to -1e30",
      "timing": "programs alternate call by call; median of the timed calls",
      "tokens_per_second_definition": "batch * gen_len / median time (output tokens)",
      "ratio_definition": "program median time / sampling median time",
      "programs": results,
      "ratios": {name: r["ratio_vs_sampling"] for name, r in results.items()},
      "breakdown": _breakdown(median),
      "tokenwise_target_ratio": TARGET_RATIO,
      "tokenwise_target_met": ratio <= TARGET_RATIO,
      "all_fixed_length": all(r["fixed_length"] for r in results.values()),
      "outputs": outputs,
  }


def _size(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


# --- output ------------------------------------------------------------------------------------
def format_table(r: dict[str, Any]) -> str:
  """The settings, one line per program, where the time goes and the target's verdict."""
  header = [
      (
          "model",
          f"{r['model']} ({', '.join(os.path.basename(f) for f in r['gin_files'])}), "
          f"{r['params_total']:,} parameters; each scorer {r['scorer_params_total']:,}",
      ),
      ("overrides", "; ".join(r["gin_overrides"]) or "-"),
      ("device", f"1 x {r['device_kind']} ({r['platform']}), jax {r['jax_version']}"),
      (
          "settings",
          f"batch {r['batch']}, prompt {r['prompt_len']} + generated {r['gen_len']} (EOS "
          f"suppressed), K {r['num_samples']}, M {r['block_length']}",
      ),
      (
          "timing",
          f"median of {r['repeats']} alternating rounds after {r['warmup']} warm-up; tok/s = "
          "batch x generated / median",
      ),
  ]
  width = max(len(k) for k, _ in header)
  lines = [f"{k.ljust(width)} | {v}" for k, v in header] + [""]
  table = [("program", "rows", "median ms", "tok/s", "x plain")]
  for name, p in r["programs"].items():
    table.append(
        (
            name,
            str(p["rows_decoded"]),
            f"{p['time_median_s'] * 1e3:.1f}",
            f"{p['tokens_per_second']:,.0f}",
            f"{p['ratio_vs_sampling']:.2f}",
        )
    )
  widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
  for i, row in enumerate(table):
    cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
    lines.append(" | ".join(cells))
    if i == 0:
      lines.append("-+-".join("-" * w for w in widths))
  lines.append("")
  for name, b in r["breakdown"].items():
    if name == "blockwise":
      lines.append(
          f"blockwise = best_of_k {b['best_of_k_s'] * 1e3:.1f} ms + scorer and regrouping "
          f"{b['scorer_and_regrouping_s'] * 1e3:.1f} ms"
      )
    else:
      lines.append(
          f"{name} = base loop {b['base_share']:.0%} + scorer loop(s) {b['scorer_share']:.0%} "
          f"+ combination {b['overhead_share']:.0%}"
      )
  verdict = "met" if r["tokenwise_target_met"] else "NOT met"
  lines.append(
      f"target tokenwise <= {r['tokenwise_target_ratio']:g}x plain sampling: {verdict} "
      f"({r['ratios']['tokenwise']:.2f}x)"
  )
  return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
  parser = benchmark_common.new_parser(
      prog="python -m tools.benchmark_cd",
      description="Benchmark token-wise and blockwise controlled decoding against plain sampling.",
      epilog="Gin overrides: --gin.NAME=VALUE (repeatable), e.g. "
      "--gin.TransformerConfig.dtype=\"'float32'\".",
  )
  parser.add_argument("--batch", type=int, default=8, help="examples (prompts) per call")
  parser.add_argument(
      "--prompt_len", type=int, default=benchmark_decode.DEFAULT_PROMPT_LEN, help="prompt tokens"
  )
  parser.add_argument(
      "--gen_len", type=int, default=benchmark_decode.DEFAULT_GEN_LEN, help="generated tokens"
  )
  parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median)")
  parser.add_argument("--warmup", type=int, default=1, help="untimed rounds (>= 1)")
  parser.add_argument("--num_samples", type=int, default=4, help="K (blockwise, best-of-K)")
  parser.add_argument("--block_length", type=int, default=4, help="M (blockwise)")
  parser.add_argument(
      "--json_out", "--output", dest="json_out", default=None, help="results file (default stdout)"
  )
  parser.add_argument("--seed", type=int, default=0, help="parameters, prompts and the key")
  return parser


def _parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = _parser()
  args, bindings = benchmark_common.parse_known_args(parser, argv)
  benchmark_common.require_positive(
      parser,
      args,
      (
          "batch",
          "prompt_len",
          "gen_len",
          "repeats",
          "warmup",
          "num_samples",
          "block_length",
      ),
  )
  return args, bindings


def _load_model(args: argparse.Namespace, bindings: list[str]):
  return benchmark_common.load_model(
      args.gin_file, args.gin_search_paths, bindings, _configured_model, "benchmark_cd"
  )


def _run(args: argparse.Namespace, model) -> dict[str, Any]:
  return run_benchmark(
      model,
      batch=args.batch,
      prompt_len=args.prompt_len,
      gen_len=args.gen_len,
      repeats=args.repeats,
      warmup=args.warmup,
      num_samples=args.num_samples,
      block_length=args.block_length,
      seed=args.seed,
      log=lambda s: print(s, file=sys.stderr, flush=True),
  )


def _exit_code(results: dict[str, Any]) -> int:
  if not results["all_fixed_length"]:
    print(
        "ERROR: a program generated EOS, so its rows did not all decode gen_len tokens and the "
        "tokens/s are not comparable (see programs.*.fixed_length).",
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
