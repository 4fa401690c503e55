"""Sizing calculator: the compute-optimal model size N and tokens D for a compute budget, and a
podzoo gin config of that model.

  python -m tools.compute_optimal --flops 1e21 [--fit scaling_experiment.json] \
      [--sequence_length 2048] [--batch_size 256] [--vocab_size 32128] [--gin_out FILE]
  python -m tools.compute_optimal --chips 256 --days 7 --peak_tflops 197 --mfu 0.4 ...

The budget is --flops, or chips x days x 86,400 s x peak TFLOP/s x 1e12 x MFU (model FLOPs
utilisation: the share of the peak a training step achieves; tools/benchmark_train.py
measures it). N and D come from a law N = a C^alpha, D = b C^beta: by default PaLM 2's and
Chinchilla's finding that both grow as C^0.5, with D = 20 N (so that 6 N D = C); with --fit,
the law fitted by tools/scaling_experiment.py (its JSON). N counts non-embedding parameters,
as the experiment does (at billions of parameters the embedding is a few percent).

The config is the nearest model of the size ladder (tools/model_sizes.py, the experiment's
own): 'gin/models/decoder_only.gin' with its TransformerConfig dims and --vocab_size, and
the run's TRAIN_STEPS = ceil(D / (batch_size x sequence_length)), BATCH_SIZE and
TASK_FEATURE_LENGTHS, with Chinchilla's learning rate schedule: cosine decay to 10% over
exactly TRAIN_STEPS (gin/runs/pretrain.gin's peak 0.01 and at most its 10,000 warm-up
steps). Pass it last, after a run config and a mixture, whose macros and vocabulary it
overrides:
  python -m trainers.train --gin_file=gin/runs/pretrain.gin \
      --gin_file=gin/mixtures/catalog_lm.gin --gin_file=FILE --gin.MODEL_DIR="'...'"
The summary (also the config's header) gives N, D, tokens per parameter, and the config's
own parameter count and its difference from N.
"""

import argparse
import json
import math
import os
import sys
from typing import Optional, Sequence

from model_zoo.errors import ConfigError, MissingFileError, UserError
from tools import benchmark_common, model_sizes, scaling_experiment, scaling_laws

SECONDS_PER_DAY = 86_400
PRETRAIN_LEARNING_RATE = 0.01  # gin/runs/pretrain.gin's peak
PRETRAIN_WARMUP_STEPS = 10_000  # and its warm-up
DEFAULT_LAW = "PaLM 2 / Chinchilla rule: N = (C / 120)^0.5, D = 20 N"


def _positive(flag: str, value: float) -> float:
  if not (math.isfinite(value) and value > 0):
    raise ConfigError(f"--{flag}={value} must be a positive number.")
  return value


def budget_from_hardware(chips: float, days: float, peak_tflops: float, mfu: float) -> float:
  """Training FLOPs: chips x days x 86,400 s x peak TFLOP/s x 1e12 x MFU."""
  for flag, value in (("chips", chips), ("days", days), ("peak_tflops", peak_tflops)):
    _positive(flag, value)
  if not (math.isfinite(mfu) and 0 < mfu <= 1):
    raise ConfigError(
        f"--mfu={mfu} must be in (0, 1]: the fraction of the peak FLOP/s a step achieves "
        "(e.g. 0.4; tools/benchmark_train.py measures it)."
    )
  return chips * days * SECONDS_PER_DAY * peak_tflops * 1e12 * mfu


def load_law(path: str) -> scaling_laws.ScalingLaw:
  """The law in tools/scaling_experiment.py's JSON at `path` (its "law": a, alpha, b, beta)."""
  if not os.path.isfile(path):
    raise MissingFileError(
        f"--fit={path}: no such file; pass the JSON that tools/scaling_experiment.py wrote "
        "(its --json_out), or leave --fit out for the PaLM 2 / Chinchilla rule."
    )
  try:
    with open(path, encoding="utf-8") as f:
      law = json.load(f)["law"]
    values = {k: float(law[k]) for k in ("a", "alpha", "b", "beta")}
  except json.JSONDecodeError as e:
    raise ConfigError(f"--fit={path} is not JSON ({e}); pass tools/scaling_experiment.py's.") from e
  except (KeyError, TypeError, ValueError) as e:
    raise ConfigError(
        f'--fit={path} has no usable law: it needs "law": {{"a", "alpha", "b", '
        f'"beta"}} numbers, as tools/scaling_experiment.py writes (missing or bad: {e}).'
    ) from e
  if not all(math.isfinite(v) for v in values.values()) or values["a"] <= 0 or values["b"] <= 0:
    raise ConfigError(
        f"--fit={path}: the law {values} needs finite exponents and positive coefficients."
    )
  return scaling_laws.ScalingLaw(
      scaling_laws.PowerLaw(values["a"], values["alpha"], law.get("r_squared_params", math.nan)),
      scaling_laws.PowerLaw(values["b"], values["beta"], law.get("r_squared_tokens", math.nan)),
  )


def recommend(
    budget: float,
    law: scaling_laws.ScalingLaw,
    law_name: str,
    sequence_length: int,
    batch_size: int,
    vocab_size: int,
    budget_note: str = "",
) -> tuple[str, str]:
  """(summary, gin config) for `budget` FLOPs (`budget_note`: where it comes from) under `law`
  (module docstring)."""
  n, d = law.params(budget), law.tokens(budget)
  rung = model_sizes.for_params(n)
  actual = rung.non_embedding_params
  steps = math.ceil(d / (batch_size * sequence_length))
  tokens = steps * batch_size * sequence_length
  summary = [
      f"compute C = {budget:.3e} FLOPs{budget_note}; {law_name}",
      f"N = {n:,.0f} non-embedding parameters, D = {d:,.0f} tokens, D/N = {d / n:.1f} tokens "
      "per parameter",
      f"config: emb_dim {rung.emb_dim}, {rung.num_layers} layers, {rung.num_heads} heads of "
      f"{rung.head_dim}, mlp_dim {rung.mlp_dim}: {actual:,} non-embedding parameters "
      f"({actual / n - 1:+.1%} vs N), {rung.total_params(vocab_size):,} with the "
      f"{vocab_size}-row embedding",
      f"run: {steps:,} steps x batch {batch_size} x {sequence_length} tokens = {tokens:,} "
      f"tokens; 6 N D = {scaling_laws.flops(actual, tokens):.3e} FLOPs for this config",
  ]
  bindings = [
      *rung.gin_bindings(),
      f"TransformerConfig.vocab_size = {vocab_size}",
      f"TRAIN_STEPS = {steps}",
      f"BATCH_SIZE = {batch_size}",
      f"TASK_FEATURE_LENGTHS = {{'targets': {sequence_length}}}",
      *scaling_experiment.schedule_bindings(steps, PRETRAIN_LEARNING_RATE, PRETRAIN_WARMUP_STEPS),
  ]
  config = "\n".join(
      [
          "# Written by tools/compute_optimal.py. Pass it last, after a run config and a",
          "# mixture (it overrides their vocabulary, steps, batch and sequence length):",
          *(f"# {line}" for line in summary),
          "include 'gin/models/decoder_only.gin'",
          *bindings,
      ]
  )
  return "\n".join(summary), config + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m tools.compute_optimal",
      description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--flops", type=float, default=None, help="the training budget C")
  parser.add_argument("--chips", type=float, default=None)
  parser.add_argument("--days", type=float, default=None)
  parser.add_argument("--peak_tflops", type=float, default=None, help="per chip (bf16 dense)")
  parser.add_argument("--mfu", type=float, default=None, help="in (0, 1], e.g. 0.4")
  parser.add_argument("--fit", default=None, help="tools/scaling_experiment.py's JSON")
  parser.add_argument("--sequence_length", type=int, default=2048)
  parser.add_argument("--batch_size", type=int, default=256)
  parser.add_argument("--vocab_size", type=int, default=32128)
  parser.add_argument("--gin_out", default=None, help="default: stdout")
  args = parser.parse_args(argv)
  hardware = [args.chips, args.days, args.peak_tflops, args.mfu]
  given = [v is not None for v in hardware]
  if (args.flops is not None) == any(given) or any(given) != all(given):
    parser.error(
        "give the budget as --flops C, or as all four of --chips, --days, --peak_tflops and "
        "--mfu (not both)"
    )
  benchmark_common.require_positive(parser, args, ("sequence_length", "batch_size", "vocab_size"))
  try:
    if args.flops is None:
      budget = budget_from_hardware(*hardware)
      note = (
          f" ({args.chips:g} chips x {args.days:g} days x {args.peak_tflops:g} TFLOP/s x MFU "
          f"{args.mfu:g})"
      )
    else:
      budget, note = _positive("flops", args.flops), ""
    law, name = (
        (load_law(args.fit), f"law fitted in {args.fit}")
        if args.fit
        else (scaling_laws.CHINCHILLA, DEFAULT_LAW)
    )
    summary, config = recommend(
        budget, law, name, args.sequence_length, args.batch_size, args.vocab_size, note
    )
  except UserError as e:
    return benchmark_common.report_user_error(e)
  if args.gin_out:
    with open(args.gin_out, "w", encoding="utf-8") as f:
      f.write(config)
    print(f"{summary}\nwrote {args.gin_out}")
  else:
    print(config, end="")
  return 0


if __name__ == "__main__":
  sys.exit(main())
