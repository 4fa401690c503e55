"""Experiment: Flan 2022's headline effects at small scale. Instruction tuning on a mixture of
tasks and templates improves UNSEEN tasks; mixing zero-shot, few-shot and chain-of-thought
templates helps each way of prompting; examples-proportional mixing with a cap vs uniform.

  python -m tools.flan_experiment [--pretrain_gin gin/mixtures/catalog_ul2.gin] \
      [--pretrain_steps 500] [--finetune_steps 80] [--batch_size 8] [--eval_examples 32] \
      [--families translation langid country_code arithmetic] [--parts held_out templates mixing] \
      [--out_dir DIR] [--json_out FILE] [--plot FILE]

Every model is trained and scored by the real command lines, gin/models/decoder_only_tiny.gin
as a prefix LM with the 8320-token pre-training vocabulary (tasks/pretraining/vocabulary.py),
gin/runs/pretrain.gin + gin/runs/short_run.gin (AdamW, warm-up over a tenth of the steps, then
a constant 3e-3):
  1. the base: `python -m trainers.train` on --pretrain_gin (UL2's mixture of denoisers over
     the catalog text) for --pretrain_steps steps of --batch_size rows of 256 tokens;
  2. instruction tuning: `python -m trainers.train` with gin/mixtures/flan.gin and
     gin/runs/finetune.gin from the base checkpoint, --finetune_steps steps of --batch_size
     packed rows of 512 tokens, on mixtures of tasks/flan's instruction tasks (the families:
     translation, langid, country_code, arithmetic), registered by a task module written to
     --out_dir that calls tools/flan_experiment_tasks.py's `register`:
       held_out   `without_<family>` for each of --families: the other families, default cap
                  and template rates (the rotation of Flan's held-out evaluation);
       templates  arithmetic held in, all families: `zero_shot_only`, `zero_and_few_shot`
                  (0.5 : 0.3) and `default` (0.5 : 0.3 : 0.2 with chain of thought); a rotation
                  cannot stand in for one of them, since it holds a family out;
       mixing     `default` (examples-proportional, cap 3000) against `uniform` (cap 1: every
                  family the same share, tasks.flan.mixing), all families, held in; `default`
                  is the template ablation's run, trained once;
  3. `python -m trainers.eval` (gin/runs/eval.gin) on each model's newest checkpoint, once per
     model, on a mixture of bounded copies of the Flan tasks it is scored on (the held-out
     family; arithmetic; every family for `default`, `uniform` and the base; see
     tools/flan_experiment_tasks.py): the first --eval_examples validation examples of each
     variant, in the source's order, in batches of EVAL_BATCH_SIZE rows, scored by
       * `rank_accuracy` (%) for a variant with answer options (`_options`): each of its 4
         options scored as the target, log p(option + EOS | prompt); the highest is the
         model's answer (chance 25);
       * for a variant without: the task's own metrics on greedy decodes, `accuracy` (exact
         match, %; CoT scored on its final answer) or, for translation, `bleu` and `chrf`;
         and `mean_log_likelihood`, the mean log p(target + EOS | prompt) in nats per example
         (the trainers' score_fn).
     The base reads every prompt after UL2's S mode token (its own prompting format, as
     tools/objectives_experiment.py scores it); the tuned models read the prompts as they were
     tuned on them, without one. The eval's own loss (one batch of LOSS_TASK) is not used.

The headline score of a family in a setting is the rank accuracy of its `<setting>_options`
task, or chrF of `translation_<setting>` (no options there); chain of thought is scored by
the accuracy of its final answer. Claims, each "reproduced" when the first model's headline
score is strictly higher:
  * held out: `without_F` > base on F, zero-shot and few-shot, for each family F;
  * templates: `default` > `zero_shot_only` on arithmetic zero-shot, few-shot and CoT;
  * mixing: `default` > `uniform` on each family, zero-shot and few-shot.
Each also shows the mean log-likelihood of the answer of the plain (no options) task in that
setting, so a small model's gains show even where greedy decodes are never exactly right.
Writes a JSON of every run's settings, mixture rates and metrics, a PNG (one panel per part)
and prints a table and the claims.

Measured on this 2-core CPU (seconds per step include the first step's compilation): on a
quiet machine (load ~2) pre-training ran 1.0 s per step of 16 x 256 tokens and tuning 1.7-2.4 s
per step of 8 x 512, and each command line spent ~60 s before its first step (TensorFlow, the
corpus, the Flan prompts, compiling). With three other jobs on the cores (load 5-7), a trial
of --families langid arithmetic --parts held_out --pretrain_steps 60 --finetune_steps 30
--batch_size 8 --eval_examples 32 took 18 minutes: pre-training 1.5 s per step of 8 x 256,
tuning 3.1-4.5 s per step of 8 x 512, ~90 s of start-up per command line, and evaluation 240 s
for the base (two families, whose greedy decodes never stop early) and ~120 s per tuned model
(one family). The defaults (500 pre-training steps, 80 tuning steps, batch 8, 32 examples per
task: 1 base, 8 tuned models, 9 evaluations) come to ~45-50 minutes on a quiet machine by those
figures, and about twice that with the cores shared.
"""

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from model_zoo.errors import UserError
from tasks.flan import instructions
from tasks.pretraining import vocabulary
from tools import benchmark_common, moe_experiment, run_logs
from tools import flan_experiment_tasks as fx
from tools.flan_experiment_tasks import ABLATION_FAMILY, BASE, DEFAULT, FAMILIES, PARTS, UNIFORM

TITLE = "Flan at small scale: instruction tuning, held-out families, templates and mixing"
MODEL_GIN = "gin/models/decoder_only_tiny.gin"
RUN_GINS = ("gin/runs/pretrain.gin", "gin/runs/short_run.gin")
FLAN_GIN = "gin/mixtures/flan.gin"
FINETUNE_GIN = "gin/runs/finetune.gin"
EVAL_GIN = "gin/runs/eval.gin"
PRETRAIN_GIN = "gin/mixtures/catalog_ul2.gin"
HELD_OUT_SETTINGS = ("zero_shot", "few_shot")
TEMPLATE_SETTINGS = ("zero_shot", "few_shot", "cot")
NO_OPTIONS_METRIC, LIKELIHOOD = "chrf", "mean_log_likelihood"
# flan.gin's lengths, one more input token for the base's UL2 mode token.
EVAL_LENGTHS = {"inputs": 385, "targets": 128}
EVAL_BATCH_SIZE = 32
LOSS_TASK = "flan_arithmetic_zero_shot"  # 200 validation examples, rendered fast
TASK_MODULE = "flan_experiment_registry"  # written to --out_dir, imported by the command lines


def write_task_module(out_dir: str, args: argparse.Namespace) -> None:
  """The task module the command lines import (MIXTURE_OR_TASK_MODULE), as a user's would be:
  tools/flan_experiment_tasks.py's `register` with this experiment's flags."""
  call = f"register({list(args.families)!r}, {list(args.parts)!r}, {args.eval_examples})"
  lines = [
      '"""Flan mixtures and eval tasks of tools/flan_experiment.py (written by it)."""',
      "from tools.flan_experiment_tasks import register",
      "",
      call,
  ]
  with open(os.path.join(out_dir, f"{TASK_MODULE}.py"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
  if out_dir not in paths:
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [out_dir, *paths]))


# --- the command lines -----------------------------------------------------------------------
def common_bindings(steps: int) -> list[str]:
  """Every command line's: the pre-training vocabulary, a prefix LM, warm-up over a tenth."""
  return [
      f"TransformerConfig.vocab_size = {vocabulary.MODEL_VOCAB_SIZE}",
      "DecoderOnlyModel.feature_converter = 'prefix_lm'",
      f"linear_warmup_constant.warmup_steps = {max(1, steps // 10)}",
  ]


def train(
    name: str,
    gin_files: Sequence[str],
    bindings: Sequence[str],
    steps: int,
    batch_size: int,
    model_dir: str,
) -> float:
  """Trains by tools/moe_experiment.py's `train` (one validation batch at the end); the
  training seconds (its log's step times summed)."""
  args = argparse.Namespace(steps=steps, batch_size=batch_size, eval_period=steps, eval_steps=1)
  moe_experiment.train(name, gin_files, [*bindings, *common_bindings(steps)], args, model_dir)
  return moe_experiment.curves(model_dir)["train_seconds"][-1]


def evaluate(name: str, model_dir: str, steps: int) -> dict[str, float]:
  """`python -m trainers.eval` of MODEL_DIR's newest checkpoint on the run's eval mixture;
  the row it wrote to eval_metrics.jsonl ("<eval task>/<metric>": value)."""
  bindings = [
      *common_bindings(steps),
      f"MIXTURE_OR_TASK_MODULE = '{TASK_MODULE}'",
      f"MIXTURE_OR_TASK_NAME = '{fx.eval_mixture_name(name)}'",
      f"TASK_FEATURE_LENGTHS = {EVAL_LENGTHS}",
      f"MODEL_DIR = '{model_dir}'",
      f"TRAIN_STEPS = {steps}",  # the training run's, as eval.gin's run configs ask
      f"BATCH_SIZE = {EVAL_BATCH_SIZE}",
      # trainers.eval's loss needs a split of one full batch or more, which a few examples
      # per task may not fill; the loss (one batch of one Flan task) is not used.
      "EVAL_STEPS = 1",
      f"validation/DatasetConfig.mixture_or_task_name = '{LOSS_TASK}'",
  ]
  gin_files = (MODEL_GIN, *RUN_GINS, FLAN_GIN, EVAL_GIN)
  flags = [f"--gin_file={f}" for f in gin_files] + [
      f"--gin.{b.replace(' = ', '=')}" for b in bindings
  ]
  print(f"== eval {name}: python -m trainers.eval {' '.join(flags)}", flush=True)
  done = subprocess.run(
      [sys.executable, "-m", "trainers.eval", *flags], cwd=moe_experiment.REPO_ROOT, check=False
  )
  if done.returncode:
    raise UserError(f"Evaluating {name} failed (exit {done.returncode}); its log is above.")
  rows = run_logs.read_jsonl(os.path.join(model_dir, "eval_metrics.jsonl"))
  return max(rows, key=lambda row: row["step"])


def task_metrics(row: Mapping[str, float], families: Sequence[str], base: bool) -> dict:
  """Flan task -> metric -> value, from an eval row ("<eval task>/<metric>": value)."""
  scores = {}
  for family in families:
    for task in fx.eval_tasks(family, base):
      key = task.name + "/"
      found = {k[len(key) :]: v for k, v in row.items() if k.startswith(key)}
      if not found:
        raise UserError(f"the eval row of step {row['step']} has no metrics of {task.name!r}")
      scores[task.flan_task] = found
  return scores


def train_and_evaluate(
    name: str,
    gin_files: Sequence[str],
    bindings: Sequence[str],
    steps: int,
    args: argparse.Namespace,
    evaluated: Sequence[str],
) -> dict[str, Any]:
  """One model trained and evaluated: where it is, its metrics and how long each took (the
  training log's step times; the wall clock of each command line, start-up included)."""
  model_dir = os.path.join(args.out_dir, name)
  started = time.monotonic()
  seconds = train(name, gin_files, bindings, steps, args.batch_size, model_dir)
  trained = time.monotonic()
  row = evaluate(name, model_dir, steps)
  return {
      "evaluated": list(evaluated),
      "model_dir": model_dir,
      "train_seconds": seconds,
      "wall_seconds": {"train": trained - started, "eval": time.monotonic() - trained},
      "metrics": task_metrics(row, evaluated, base=name == BASE),
  }


def run(args: argparse.Namespace) -> dict[str, Any]:
  args.out_dir = os.path.abspath(args.out_dir or tempfile.mkdtemp(prefix="flan_experiment_"))
  os.makedirs(args.out_dir, exist_ok=True)
  write_task_module(args.out_dir, args)
  runs = fx.plan(args.families, args.parts)
  base_gins = (MODEL_GIN, *RUN_GINS, args.pretrain_gin)
  base = train_and_evaluate(BASE, base_gins, [], args.pretrain_steps, args, fx.base_families(runs))
  results = {BASE: base}
  for name, fine_tune in runs.items():
    bindings = [
        f"MIXTURE_OR_TASK_MODULE = '{TASK_MODULE}'",
        f"MIXTURE_OR_TASK_NAME = '{fx.mixture_name(name)}'",
        f"INITIAL_CHECKPOINT_PATH = '{base['model_dir']}'",
    ]
    gin_files = (MODEL_GIN, *RUN_GINS, FLAN_GIN, FINETUNE_GIN)
    tuned = train_and_evaluate(
        name, gin_files, bindings, args.finetune_steps, args, fine_tune.evaluated
    )
    results[name] = {**dataclasses.asdict(fine_tune), "mixture": fine_tune.rates(), **tuned}
  return summarise(vars(args), results)


# --- results ---------------------------------------------------------------------------------
def headline(family: str, setting: str) -> tuple[str, str]:
  """(Flan task, metric) of `family`'s headline score in `setting` (module docstring)."""
  instruction = FAMILIES[family]
  if setting == "cot":
    return instructions.task_name(instruction, instructions.Variant("cot", False)), "accuracy"
  with_options = instructions.Variant(setting, True) in instruction.variants()
  task = instructions.task_name(instruction, instructions.Variant(setting, with_options))
  return task, fx.RANK_METRIC if with_options else NO_OPTIONS_METRIC


def likelihood_task(family: str, setting: str) -> str:
  """The plain (no options) task whose answers' log-likelihood goes with the headline."""
  return instructions.task_name(FAMILIES[family], instructions.Variant(setting, False))


def compare(
    models: Mapping[str, dict], names: Sequence[str], family: str, setting: str
) -> dict[str, Any]:
  """The headline score and the answers' mean log-likelihood of each of `names`."""
  task, metric = headline(family, setting)
  plain = likelihood_task(family, setting)
  return {
      "family": family,
      "setting": setting,
      "task": task,
      "metric": metric,
      "scores": {n: models[n]["metrics"][task][metric] for n in names},
      "likelihood_task": plain,
      "likelihoods": {n: models[n]["metrics"][plain][LIKELIHOOD] for n in names},
  }


def claim(part: str, better: str, worse: str, comparison: dict[str, Any]) -> dict[str, Any]:
  """One claim: `better` scores strictly higher than `worse` in the comparison."""
  return {
      "part": part,
      "better": better,
      "worse": worse,
      **comparison,
      "reproduced": comparison["scores"][better] > comparison["scores"][worse],
      "likelihood_higher": comparison["likelihoods"][better] > comparison["likelihoods"][worse],
  }


def claims(families: Sequence[str], models: Mapping[str, dict]) -> list[dict[str, Any]]:
  """The claims of the module docstring that the trained `models` can test."""
  found = []
  for family in families:
    name = f"without_{family}"
    if name in models:
      for setting in HELD_OUT_SETTINGS:
        found.append(claim("held_out", name, BASE, compare(models, (BASE, name), family, setting)))
  if all(name in models for name in fx.TEMPLATE_RUNS):
    for setting in TEMPLATE_SETTINGS:
      comparison = compare(models, tuple(fx.TEMPLATE_RUNS), ABLATION_FAMILY, setting)
      found.append(claim("templates", DEFAULT, "zero_shot_only", comparison))
  if UNIFORM in models:
    for family in families:
      for setting in HELD_OUT_SETTINGS:
        comparison = compare(models, (DEFAULT, UNIFORM), family, setting)
        found.append(claim("mixing", DEFAULT, UNIFORM, comparison))
  return found


def summarise(settings: dict[str, Any], models: dict[str, dict]) -> dict[str, Any]:
  """The results: the settings, every model's run and metrics, and the claims."""
  keys = ("pretrain_gin", "pretrain_steps", "finetune_steps", "batch_size", "eval_examples")
  return {
      **{k: settings[k] for k in keys},
      "families": list(settings["families"]),
      "parts": list(settings["parts"]),
      "gin_files": {
          "pretrain": [MODEL_GIN, *RUN_GINS, settings["pretrain_gin"]],
          "finetune": [MODEL_GIN, *RUN_GINS, FLAN_GIN, FINETUNE_GIN],
          "eval": [MODEL_GIN, *RUN_GINS, FLAN_GIN, EVAL_GIN],
      },
      "models": models,
      "claims": claims(settings["families"], models),
  }


def format_table(r: dict[str, Any]) -> str:
  lines = [
      f"base: {MODEL_GIN} pre-trained {r['pretrain_steps']} steps on {r['pretrain_gin']}; each "
      f"tuned model {r['finetune_steps']} steps; batch {r['batch_size']}; scores on the first "
      f"{r['eval_examples']} validation examples of each task",
      "score: rank accuracy % of the _options task (chance 25), chrF for translation, final-"
      "answer accuracy % for CoT; log p: the plain task's answers' mean log-likelihood (nats)",
      "part | family setting | metric: score by model | log p by model | reproduced (log p)",
  ]
  for c in r["claims"]:
    scores = " / ".join(f"{n} {v:.2f}" for n, v in c["scores"].items())
    likelihoods = " / ".join(f"{n} {v:.2f}" for n, v in c["likelihoods"].items())
    lines.append(
        f"{c['part']} | {c['family']} {c['setting']} | {c['metric']}: {scores} | {likelihoods} "
        f"| {_yes(c['reproduced'])} ({_yes(c['likelihood_higher'])})"
    )
  lines.append("Claims (the first model scores higher than the second):")
  for part in PARTS:
    found = [c for c in r["claims"] if c["part"] == part]
    if found:
      better = "without_<family>" if part == "held_out" else found[0]["better"]
      lines.append(
          f"  {part}: {better} > {found[0]['worse']}: reproduced in "
          f"{sum(c['reproduced'] for c in found)} of {len(found)} by the score, "
          f"{sum(c['likelihood_higher'] for c in found)} of {len(found)} by log p"
      )
  return "\n".join(lines)


def _yes(value: bool) -> str:
  return "yes" if value else "no"


SERIES = {"held_out": ("base", "tuned, family held out")}  # one tuned model per family


def plot(r: dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel  (the [experiments] extra)

  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  parts = [p for p in PARTS if any(c["part"] == p for c in r["claims"])]
  figure_width = max(7.0, 5.5 * len(parts))
  figure, axes = pyplot.subplots(1, len(parts), figsize=(figure_width, 4.2), squeeze=False)
  for axis, part in zip(axes[0], parts):
    found = [c for c in r["claims"] if c["part"] == part]
    labels = SERIES.get(part, tuple(found[0]["scores"]))
    x = np.arange(len(found))
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
      values = [list(c["scores"].values())[i] for c in found]
      axis.bar(x + (i - (len(labels) - 1) / 2) * width, values, width, label=label)
    axis.set_xticks(x, [f"{c['family']}\n{c['setting']}" for c in found], fontsize=7)
    axis.axhline(25, color="grey", linestyle="--", linewidth=0.8, label="chance (options)")
    axis.set(title=part.replace("_", " "), ylabel="score (rank acc. %, chrF, CoT acc. %)")
    axis.legend(fontsize=7)
  figure.suptitle(TITLE, fontsize=10)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  pyplot.close(figure)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tools.flan_experiment", description=__doc__)
  parser.add_argument("--pretrain_gin", default=PRETRAIN_GIN, help="the base's mixture gin")
  parser.add_argument("--pretrain_steps", type=int, default=500)
  parser.add_argument("--finetune_steps", type=int, default=80)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--eval_examples", type=int, default=32, help="per task, from its start")
  parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
  parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
  parser.add_argument("--out_dir", default=None, help="the runs' MODEL_DIRs go here")
  parser.add_argument("--json_out", default="flan_experiment.json")
  parser.add_argument("--plot", default="flan_experiment.png")
  args = parser.parse_args(argv)
  benchmark_common.require_positive(
      parser, args, ("pretrain_steps", "finetune_steps", "batch_size", "eval_examples")
  )
  if len(set(args.families)) != len(args.families):
    parser.error(f"--families {' '.join(args.families)} names a family twice")
  if len(args.families) < 2:
    parser.error("--families needs two or more (one to hold out and one to tune on; two to mix)")
  if "templates" in args.parts and ABLATION_FAMILY not in args.families:
    parser.error(f"--parts templates needs {ABLATION_FAMILY} (the family with CoT) in --families")
  if not os.path.exists(os.path.join(moe_experiment.REPO_ROOT, args.pretrain_gin)):
    parser.error(
        f"--pretrain_gin={args.pretrain_gin} does not exist (paths are relative to the "
        f"repository root); the UL2 pre-training mixture is {PRETRAIN_GIN}"
    )
  return benchmark_common.finish_experiment(run, args, plot, format_table)


if __name__ == "__main__":
  sys.exit(main())
