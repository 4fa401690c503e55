"""Experiment: dense vs GLaM vs Brainformer at equal activated parameters per token, on the
multilingual ASR LM text mixture; eval loss against steps and against training time, steps/s.

  python -m tools.brainformer_experiment [--steps 1500] [--eval_period 100] [--batch_size 16] \
      [--out_dir DIR] [--json_out FILE] [--plot FILE]

Each model is trained by the real command line (tools/moe_experiment.py's `train`: a
`python -m trainers.train` process of its own) with gin/runs/pretrain.gin,
gin/runs/short_run.gin and gin/mixtures/asr_lm.gin after its model file; same data order,
seed, optimizer and schedule for all. The models (~1.05M activated parameters per token
outside the embedding each):

  * dense: decoder_only_tiny.gin, 4 layers, gated GELU 576 wide;
  * GLaM E=4: glam_tiny.gin, [dense, top-2 MoE] x 2, each expert 384 wide;
  * Brainformer: brainformer_tiny.gin, one Brainformer-1 block (d_model 160, 2 attention,
    3 FFN, 3 expert-choice MoE sub-layers at capacity factor 1, 4 experts, all 320 wide);
  * Brainformer top-1: the same block with top-1 token-choice routing at capacity factor 2,
    a causal control (expert choice ranks a sequence's tokens, so a token's routing sees the
    tokens after it; the loss of a model that can use that is not an LM's loss alone).

The paper's claims (Zhou et al. 2023, at 8B activated parameters): about 2x faster
convergence than GLaM (steps to reach GLaM's final quality) and a higher step rate (1.96 vs
0.39 steps/s). Writes a JSON of every curve, a PNG and a table: final eval loss, its change
from dense, steps/s in training, training time, the steps each model needs to reach GLaM's
final eval loss beside GLaM's (the convergence speed-up), and each model's median train step
time measured side by side after training (tools/benchmark_moe.py's run_compare: the four
models' steps alternate on the same batches, --timing_steps each, so a change in the
machine's load falls on all alike; the training runs' own times are not, being sequential).
"""

import argparse
import os
import sys
import tempfile
from typing import Any, Optional, Sequence

import gin

from tools import benchmark_common, benchmark_moe, moe_experiment

RUN_GIN_FILES = ("gin/runs/pretrain.gin", "gin/runs/short_run.gin", "gin/mixtures/asr_lm.gin")
GLAM = "GLaM E=4"
SEQUENCE_LENGTH = 64  # gin/mixtures/asr_lm.gin's TASK_FEATURE_LENGTHS
# name -> (model gin file, bindings)
VARIANTS = {
    benchmark_moe.DENSE: (
        "gin/models/decoder_only_tiny.gin",
        ["TransformerConfig.activations = ('gelu', 'linear')", "TransformerConfig.mlp_dim = 576"],
    ),
    GLAM: ("gin/models/glam_tiny.gin", []),
    "Brainformer": ("gin/models/brainformer_tiny.gin", []),
    "Brainformer top-1": (
        "gin/models/brainformer_tiny.gin",
        [
            "brainformer_1_block.router = 'top_k'",
            "brainformer_1_block.top_k = 1",
            "brainformer_1_block.capacity_factor = 2.0",
        ],
    ),
}
TITLE = "Dense vs GLaM vs Brainformer at equal activated parameters per token (ASR LM text)"
_configured_model = benchmark_common.model_configurable("brainformer_experiment")


def steps_to_reach(curve: dict[str, list[float]], target: float) -> Optional[int]:
  """The first evaluated step whose eval loss is at most `target` (None: never)."""
  return next((s for s, l in zip(curve["step"], curve["eval_loss"]) if l <= target), None)


def add_convergence(results: dict[str, Any]) -> dict[str, Any]:
  """Each model's steps to GLaM's final eval loss, and GLaM's steps over them (> 1: faster)."""
  models = results["models"]
  target = models[GLAM]["final_eval_loss"]
  for row in models.values():
    reached = steps_to_reach(row, target)
    row["steps_to_glam_loss"] = reached
    row["convergence_vs_glam"] = models[GLAM]["step"][-1] / reached if reached else None
    row["steps_per_second"] = row["step"][-1] / row["train_seconds"][-1]
  return results


def _model_files(model_gin: str) -> list[str]:
  return [model_gin, RUN_GIN_FILES[-1]]  # the dims, and the mixture's vocabulary size


def run(args: argparse.Namespace) -> dict[str, Any]:
  out_dir = os.path.abspath(args.out_dir or tempfile.mkdtemp(prefix="brainformer_experiment_"))
  results, models = {}, {}
  for name, (model_gin, bindings) in VARIANTS.items():
    gin.clear_config()
    models[name] = benchmark_common.load_model(
        _model_files(model_gin),
        moe_experiment.REPO_ROOT,
        [*bindings, "TransformerConfig.dtype = 'float32'"],  # as gin/runs/short_run.gin trains
        _configured_model,
        "brainformer_experiment",
    )
    model_dir = os.path.join(out_dir, name.replace(" ", "_").replace("=", ""))
    moe_experiment.train(name, [model_gin, *RUN_GIN_FILES], bindings, args, model_dir)
    results[name] = {**moe_experiment.curves(model_dir), **moe_experiment.parameters(models[name])}
  keys = ("steps", "batch_size", "eval_period", "eval_steps", "timing_steps")
  summary = moe_experiment.summarise(vars(args), results, keys, RUN_GIN_FILES)
  timed = benchmark_moe.run_compare(
      models,
      batch_size=args.batch_size,
      seq_len=SEQUENCE_LENGTH,
      steps=args.timing_steps,
      warmup_steps=3,
      profile_steps=0,
  )["models"]
  for name, row in summary["models"].items():
    row["step_time_median_s"] = timed[name]["step_time_median_s"]
    row["step_time_vs_dense"] = timed[name]["step_time_vs_dense"]
  return add_convergence(summary)


def format_table(r: dict[str, Any]) -> str:
  lines = [
      moe_experiment.format_table(r),
      "",
      f"model | steps/s in training | step ms side by side ({r['timing_steps']} steps, median) "
      "| vs dense | steps to GLaM's final loss",
  ]
  for name, m in r["models"].items():
    reached = m["steps_to_glam_loss"]
    speedup = f" ({m['convergence_vs_glam']:.2f}x GLaM)" if reached else ""
    lines.append(
        f"{name} | {m['steps_per_second']:.2f} | {1000 * m['step_time_median_s']:.1f} | "
        f"{m['step_time_vs_dense']:.2f}x | {reached or 'not reached'}{speedup}"
    )
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m tools.brainformer_experiment", description=__doc__
  )
  moe_experiment.add_run_arguments(parser, "brainformer_experiment")
  parser.add_argument(
      "--timing_steps",
      type=int,
      default=30,
      help="after training, the models' train steps are timed side by side, alternating",
  )
  return moe_experiment.experiment_main(parser, argv, run, TITLE, format_table)


if __name__ == "__main__":
  sys.exit(main())
