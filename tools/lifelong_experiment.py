"""Experiment: Lifelong-MoE vs naive fine-tuning vs new experts without distillation, over ASR LM
text of several languages in sequence; each model's loss on every language after each phase.

  python -m tools.lifelong_experiment [--languages en ru de] [--steps 600] \
      [--initial_experts 2] [--new_experts 2] [--distillation_weight 1.0] [--batch_size 16] \
      [--eval_batches 10] [--out_dir DIR] [--json_out FILE] [--plot FILE]

Phase 0 trains GLaM-tiny (gin/models/glam_tiny.gin, --initial_experts experts) on the first
language's task (asr_lm_<lang>); every later phase continues from the phase before on the next
language, for --steps steps, by the real command line (tools/moe_experiment.py's `train`):

  * Lifelong-MoE: gin/runs/lifelong_phase.gin: --new_experts more experts per MoE layer, the
    old ones and their router columns frozen, distillation from the previous phase's model
    (--distillation_weight);
  * new experts only: the same with distillation weight 0;
  * naive fine-tuning: gin/runs/finetune.gin, the same model, every parameter trained.

After each phase the newest checkpoint's model is scored on each language's validation split
(--eval_batches batches; cross entropy in nats per token; the training pipeline, no packing).
Lifelong-MoE's claim (Chen et al. 2023): growing experts and regularising by distillation
keeps the earlier distributions' quality while adapting to the new one, where naive
fine-tuning forgets. Writes a JSON of every score, a PNG (each language's loss after each
phase, by method) and prints a table: the losses after the last phase, the first language's
rise since phase 0 (forgetting) and the newest language's loss (adaptation).
"""

import argparse
import os
import sys
import tempfile
from typing import Any, Optional, Sequence

import gin
import jax
import numpy as np

from model_zoo import metrics as metrics_lib
from tools import benchmark_common, moe_experiment
from trainers import data
from trainers.dataset_config import DatasetConfig

LIFELONG, NEW_EXPERTS_ONLY, NAIVE = METHODS = (
    "Lifelong-MoE",
    "new experts only",
    "naive fine-tuning",
)
PHASE_GIN_FILE = {
    LIFELONG: "gin/runs/lifelong_phase.gin",
    NEW_EXPERTS_ONLY: "gin/runs/lifelong_phase.gin",
    NAIVE: "gin/runs/finetune.gin",
}
SEQUENCE_LENGTH = 64  # gin/mixtures/asr_lm.gin's TASK_FEATURE_LENGTHS
_configured_model = benchmark_common.model_configurable("lifelong_experiment")


def experts_in_phase(method: str, phase: int, args: argparse.Namespace) -> int:
  """MoeConfig.num_experts of `method`'s model in `phase` (naive fine-tuning never grows)."""
  return args.initial_experts + (0 if method == NAIVE else phase * args.new_experts)


def phase_bindings(
    method: str, phase: int, args: argparse.Namespace, previous_dir: Optional[str]
) -> list[str]:
  """The gin bindings of one phase's run (module docstring)."""
  bindings = [
      f"MIXTURE_OR_TASK_NAME = 'asr_lm_{args.languages[phase]}'",
      f"MoeConfig.num_experts = {experts_in_phase(method, phase, args)}",
  ]
  if phase == 0:
    return bindings
  bindings.append(f"INITIAL_CHECKPOINT_PATH = '{previous_dir}'")
  if method != NAIVE:
    weight = args.distillation_weight if method == LIFELONG else 0.0
    bindings += [
        f"PREVIOUS_NUM_EXPERTS = {experts_in_phase(method, phase - 1, args)}",
        f"DISTILLATION_WEIGHT = {weight}",
    ]
  return bindings


def _model(num_experts: int):
  """The phase's model alone (its teacher left out), fp32 as it trained."""
  gin.clear_config()
  return benchmark_common.load_model(
      [moe_experiment.GIN_FILES[0], moe_experiment.GIN_FILES[-1]],
      moe_experiment.REPO_ROOT,
      [f"MoeConfig.num_experts = {num_experts}", "TransformerConfig.dtype = 'float32'"],
      _configured_model,
      "lifelong_experiment",
  )


def cross_entropies(
    model_dir: str, num_experts: int, languages: Sequence[str], args: argparse.Namespace
) -> dict[str, float]:
  """Eval cross entropy of MODEL_DIR's newest model on each language's validation batches."""
  model = _model(num_experts)
  params = benchmark_common.newest_params(model, model_dir)
  step = jax.jit(lambda p, b: model.loss_fn(p, b)[1]["cross_entropy"])
  scores = {}
  for language in languages:
    cfg = DatasetConfig(
        f"asr_lm_{language}",
        {"targets": SEQUENCE_LENGTH},
        split="validation",
        batch_size=args.batch_size,
        shuffle=False,
        pack=False,
        num_epochs=1,
    )
    total = None
    for batch in data.take(data.batches(cfg, model.FEATURE_CONVERTER_CLS), args.eval_batches):
      average = step(params, batch)
      total = average if total is None else total.merge(average)
    scores[language] = metrics_lib.values({"ce": total})["ce"]
  return scores


def run(args: argparse.Namespace) -> dict[str, Any]:
  out_dir = os.path.abspath(args.out_dir or tempfile.mkdtemp(prefix="lifelong_experiment_"))
  run_args = argparse.Namespace(
      steps=args.steps, batch_size=args.batch_size, eval_period=args.steps, eval_steps=1
  )
  first = os.path.join(out_dir, "phase0")
  moe_experiment.train(
      "phase 0", moe_experiment.GIN_FILES, phase_bindings(NAIVE, 0, args, None), run_args, first
  )
  start = cross_entropies(first, args.initial_experts, args.languages, args)
  results = {method: [start] for method in METHODS}
  for method in METHODS:
    previous = first
    for phase in range(1, len(args.languages)):
      model_dir = os.path.join(out_dir, f"{method.replace(' ', '_')}_phase{phase}")
      gin_files = [*moe_experiment.GIN_FILES, PHASE_GIN_FILE[method]]
      bindings = phase_bindings(method, phase, args, previous)
      moe_experiment.train(f"{method}, phase {phase}", gin_files, bindings, run_args, model_dir)
      experts = experts_in_phase(method, phase, args)
      results[method].append(cross_entropies(model_dir, experts, args.languages, args))
      previous = model_dir
  return summarise(vars(args), results)


def summarise(settings: dict[str, Any], losses: dict[str, list[dict[str, float]]]) -> dict:
  """Per method: each phase's losses by language, the first language's rise since phase 0
  (forgetting) and the last language's loss after its phase (adaptation)."""
  languages = settings["languages"]
  methods = {}
  for method, phases in losses.items():
    methods[method] = {
        "eval_cross_entropy": phases,
        "forgetting": phases[-1][languages[0]] - phases[0][languages[0]],
        "newest_language": phases[-1][languages[-1]],
        "experts": experts_in_phase(method, len(languages) - 1, argparse.Namespace(**settings)),
    }
  keys = (
      "languages",
      "steps",
      "batch_size",
      "eval_batches",
      "initial_experts",
      "new_experts",
      "distillation_weight",
  )
  return {**{k: settings[k] for k in keys}, "methods": methods}


def format_table(r: dict[str, Any]) -> str:
  languages = r["languages"]
  lines = [
      f"{len(languages)} phases ({' -> '.join(languages)}) of {r['steps']} steps, batch "
      f"{r['batch_size']}; eval cross entropy on {r['eval_batches']} validation batches of each",
      "method | experts | after the last phase: "
      + " | ".join(languages)
      + f" | forgetting ({languages[0]})",
  ]
  for method, m in r["methods"].items():
    last = m["eval_cross_entropy"][-1]
    scores = " | ".join(f"{last[lang]:.4f}" for lang in languages)
    lines.append(f"{method} | {m['experts']} | {scores} | {m['forgetting']:+.4f}")
  return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel  (the [experiments] extra)

  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  languages = r["languages"]
  figure, axes = pyplot.subplots(1, len(languages), figsize=(4 * len(languages), 3.8))
  for axis, language in zip(np.atleast_1d(axes), languages):
    for method, m in r["methods"].items():
      scores = [phase[language] for phase in m["eval_cross_entropy"]]
      axis.plot(range(len(scores)), scores, marker="o", label=method)
    axis.set(title=f"asr_lm_{language}", xlabel="after phase", ylabel="eval cross entropy")
    axis.set_xticks(range(len(languages)))
  np.atleast_1d(axes)[0].legend()
  figure.suptitle("Lifelong-MoE vs naive fine-tuning: each language's loss after each phase")
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  pyplot.close(figure)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tools.lifelong_experiment", description=__doc__)
  parser.add_argument("--languages", nargs="+", default=["en", "ru", "de"])
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--eval_batches", type=int, default=10)
  parser.add_argument("--initial_experts", type=int, default=2)
  parser.add_argument("--new_experts", type=int, default=2)
  parser.add_argument("--distillation_weight", type=float, default=1.0)
  parser.add_argument("--out_dir", default=None, help="the runs' MODEL_DIRs go here")
  parser.add_argument("--json_out", default="lifelong_experiment.json")
  parser.add_argument("--plot", default="lifelong_experiment.png")
  args = parser.parse_args(argv)
  if len(args.languages) < 2:
    parser.error("--languages needs two or more (a phase 0 and a phase to continue it)")
  benchmark_common.require_positive(
      parser, args, ("steps", "batch_size", "eval_batches", "initial_experts", "new_experts")
  )
  if args.distillation_weight < 0:
    parser.error(f"--distillation_weight={args.distillation_weight} must be >= 0")
  return benchmark_common.finish_experiment(run, args, plot, format_table)


if __name__ == "__main__":
  sys.exit(main())
