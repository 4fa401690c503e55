"""Experiment: UL2's mixture of denoisers vs a plain causal LM at equal compute (PaLM 2's
mixture of objectives), scored on held-out text and on few-shot Flan prompts.

  python -m tools.objectives_experiment [--steps 1000] [--batch_size 16] \
      [--eval_documents 400] [--eval_prompts 150] [--out_dir DIR] [--json_out FILE] [--plot FILE]

Two decoder-only models of one size (gin/models/decoder_only_tiny.gin, 8320-token vocabulary)
are trained by the real command line (tools/moe_experiment.py's `train`) with
gin/runs/pretrain.gin and gin/runs/short_run.gin on the same catalog documents
(tasks/pretraining/): the causal LM on gin/mixtures/catalog_lm.gin, the UL2 model as a
prefix LM on gin/mixtures/catalog_ul2.gin (R, X and S denoisers, each example led by its
mode token). Rows are 256 tokens in both, with the same batch and steps: equal compute.

Each newest checkpoint is then scored in-process, each model in its own
format (the causal LM attends causally over everything; the UL2 model reads the prompt
bidirectionally after UL2's S mode token, as UL2 prompts for few-shot):
  * continuation: the second half of each of --eval_documents validation documents given
    its first half, in nats per token (EOS included): the language-modelling loss on text
    neither model trained on, on the same target tokens for both;
  * Flan probes: the validation prompts of language ID, country codes and arithmetic with
    answer options, zero-shot and few-shot (3 solved exemplars), as the Flan tasks render
    them (tasks/flan/prompts.py, seed 0); neither model saw a Flan prompt. Rank
    classification: the option of highest log-likelihood is the model's answer (accuracy;
    chance is 1/4), and the right answer's nats per token.

PaLM 2's claim (after UL2, Tay et al. 2022): a mixture of pre-training objectives beats a
single causal LM objective at equal compute on downstream tasks. Writes a JSON of every
score, a PNG (continuation loss; probe accuracy by task) and prints a table.
"""

import argparse
import os
import sys
import tempfile
from typing import Any, Optional, Sequence

import gin
import jax
import numpy as np

from tasks.flan import arithmetic, corpus_tasks, instructions, prompts, templates
from tasks.pretraining import text, vocabulary
from tools import benchmark_common, moe_experiment

MODEL_GIN = "gin/models/decoder_only_tiny.gin"
RUN_GIN_FILES = ("gin/runs/pretrain.gin", "gin/runs/short_run.gin")
CAUSAL, UL2 = OBJECTIVES = ("causal LM", "UL2 mixture")
MIXTURE_GIN = {CAUSAL: "gin/mixtures/catalog_lm.gin", UL2: "gin/mixtures/catalog_ul2.gin"}
PROBE_TASKS = (corpus_tasks.LANGUAGE_ID, corpus_tasks.COUNTRY_CODE, arithmetic.ARITHMETIC)
SHOTS = ("zero_shot", "few_shot")
PROMPT_SEED = "0"
SCORE_ROWS = 16  # examples scored per compiled call
EOS = 1
_configured_model = benchmark_common.model_configurable("objectives_experiment")


def gin_files(objective: str) -> list[str]:
  return [MODEL_GIN, *RUN_GIN_FILES, MIXTURE_GIN[objective]]


def prompt_prefix(objective: str) -> list[int]:
  """What leads every prompt: UL2's S mode token for the UL2 model, nothing for the causal LM."""
  return [vocabulary.mode_id("S")] if objective == UL2 else []


def continuations(num_documents: int) -> list[tuple[list[int], list[int]]]:
  """(first half, second half + EOS) of the first validation documents' tokens."""
  vocab = vocabulary.pretraining_vocabulary()
  pairs = []
  for document in text.documents("validation")[:num_documents]:
    tokens = vocab.encode(document)
    cut = len(tokens) // 2
    pairs.append((tokens[:cut], tokens[cut:] + [EOS]))
  return pairs


def flan_probes(
    instruction: instructions.InstructionTask, kind: str, num_prompts: int
) -> list[tuple[str, list[str], int]]:
  """(prompt, options, index of the right one) of the first validation prompts of the task's
  `kind` variant with options, rendered as its Flan task renders them."""
  variant = instructions.Variant(kind, with_options=True)
  probes = []
  for example in instructions.split_examples(instruction, "validation"):
    rendered = prompts.render_example(instruction, variant, example, PROMPT_SEED)
    if rendered is None:
      continue
    options = templates.answer_options(rendered.inputs)
    probes.append((rendered.inputs, options, options.index(rendered.targets)))
    if len(probes) == num_prompts:
      break
  return probes


def log_likelihoods(model, params, pairs: Sequence[tuple[list[int], list[int]]]) -> np.ndarray:
  """log p(target | prompt) of each (prompt ids, target ids), SCORE_ROWS at a time, each chunk
  padded to a multiple of 64 tokens (few distinct shapes to compile)."""
  score = jax.jit(model.score_batch)
  scores = []
  for start in range(0, len(pairs), SCORE_ROWS):
    chunk = pairs[start : start + SCORE_ROWS]
    length = -(-max(len(p) + len(t) for p, t in chunk) // 64) * 64
    batch = model.scoring_batch([p for p, _ in chunk], [t for _, t in chunk], SCORE_ROWS, length)
    scores.append(np.asarray(score(params, batch))[: len(chunk)])
  return np.concatenate(scores)


def probe_scores(model, params, objective: str, probes) -> dict[str, float]:
  """Rank-classification accuracy and the right answers' nats per token."""
  vocab = vocabulary.pretraining_vocabulary()
  pairs, owners = [], []
  for i, (prompt, options, _) in enumerate(probes):
    prompt_ids = prompt_prefix(objective) + vocab.encode(prompt)
    for option in options:
      pairs.append((prompt_ids, vocab.encode(option) + [EOS]))
      owners.append(i)
  scores = log_likelihoods(model, params, pairs)
  owners = np.asarray(owners)
  correct, answer_nats, answer_tokens = 0, 0.0, 0
  for i, (_, options, answer) in enumerate(probes):
    option_scores = scores[owners == i]
    correct += int(np.argmax(option_scores) == answer)
    answer_nats -= option_scores[answer]
    answer_tokens += len(vocab.encode(options[answer])) + 1
  return {
      "accuracy": correct / len(probes),
      "answer_nats_per_token": answer_nats / answer_tokens,
      "prompts": len(probes),
  }


def restored(objective: str, model_dir: str):
  """(model, parameters) of the objective's run, from its newest checkpoint, in float32."""
  gin.clear_config()
  model = benchmark_common.load_model(
      [MODEL_GIN, MIXTURE_GIN[objective]],
      moe_experiment.REPO_ROOT,
      ["TransformerConfig.dtype = 'float32'"],
      _configured_model,
      "objectives_experiment",
  )
  params = benchmark_common.newest_params(model, model_dir)
  return model, params


def evaluate(objective: str, model_dir: str, args: argparse.Namespace) -> dict[str, Any]:
  """The module docstring's scores of one trained model."""
  model, params = restored(objective, model_dir)
  pairs = [
      (prompt_prefix(objective) + prompt, target)
      for prompt, target in continuations(args.eval_documents)
  ]
  nats = -log_likelihoods(model, params, pairs).sum()
  scores = {"continuation_nats_per_token": nats / sum(len(t) for _, t in pairs), "probes": {}}
  for instruction in PROBE_TASKS:
    for kind in SHOTS:
      probes = flan_probes(instruction, kind, args.eval_prompts)
      scores["probes"][f"{instruction.name} {kind}"] = probe_scores(
          model, params, objective, probes
      )
  gin.clear_config()
  return scores


def run(args: argparse.Namespace) -> dict[str, Any]:
  out_dir = os.path.abspath(args.out_dir or tempfile.mkdtemp(prefix="objectives_experiment_"))
  models = {}
  for objective in OBJECTIVES:
    model_dir = os.path.join(out_dir, objective.replace(" ", "_"))
    moe_experiment.train(objective, gin_files(objective), [], args, model_dir)
    models[objective] = {
        **moe_experiment.curves(model_dir),
        **evaluate(objective, model_dir, args),
    }
  keys = ("steps", "batch_size", "eval_period", "eval_steps", "eval_documents", "eval_prompts")
  return {"model_gin": MODEL_GIN, **{k: vars(args)[k] for k in keys}, "models": models}


def format_table(r: dict[str, Any]) -> str:
  causal, ul2 = (r["models"][o] for o in OBJECTIVES)
  lines = [
      f"{r['steps']} steps of batch {r['batch_size']} x 256 tokens each; scores on held-out "
      f"text ({r['eval_documents']} documents) and Flan prompts (rank classification, chance "
      "0.25)",
      f"score | {CAUSAL} | {UL2} | UL2 better",
      f"continuation nats/token | {causal['continuation_nats_per_token']:.4f} | "
      f"{ul2['continuation_nats_per_token']:.4f} | "
      f"{ul2['continuation_nats_per_token'] < causal['continuation_nats_per_token']}",
  ]
  for probe in causal["probes"]:
    a, b = causal["probes"][probe], ul2["probes"][probe]
    lines.append(
        f"{probe} accuracy ({a['prompts']} prompts) | {a['accuracy']:.3f} | {b['accuracy']:.3f} "
        f"| {b['accuracy'] > a['accuracy']}"
    )
    lines.append(
        f"{probe} answer nats/token | {a['answer_nats_per_token']:.3f} | "
        f"{b['answer_nats_per_token']:.3f} | "
        f"{b['answer_nats_per_token'] < a['answer_nats_per_token']}"
    )
  return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel  (the [experiments] extra)

  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  figure, (loss, accuracy) = pyplot.subplots(
      1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 3]}
  )
  models = r["models"]
  loss.bar(OBJECTIVES, [models[o]["continuation_nats_per_token"] for o in OBJECTIVES])
  loss.set(ylabel="nats/token", title="held-out continuation loss")
  probes = list(models[CAUSAL]["probes"])
  x = np.arange(len(probes))
  for i, objective in enumerate(OBJECTIVES):
    values = [models[objective]["probes"][p]["accuracy"] for p in probes]
    accuracy.bar(x + (i - 0.5) * 0.4, values, 0.4, label=objective)
  accuracy.axhline(1 / prompts.NUM_OPTIONS, color="grey", linestyle="--", label="chance")
  accuracy.set_xticks(x, [p.replace(" ", "\n", 1) for p in probes], fontsize=8)
  accuracy.set(ylabel="rank-classification accuracy", title="Flan prompts, never trained on")
  accuracy.legend()
  figure.suptitle("UL2 mixture of denoisers vs causal LM at equal compute (catalog text)")
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  pyplot.close(figure)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m tools.objectives_experiment", description=__doc__
  )
  moe_experiment.add_run_arguments(parser, "objectives_experiment")
  parser.set_defaults(steps=1000, eval_period=250)
  parser.add_argument("--eval_documents", type=int, default=400)
  parser.add_argument("--eval_prompts", type=int, default=150, help="per probe task and setting")
  return moe_experiment.experiment_main(parser, argv, run, "", format_table, plot)


if __name__ == "__main__":
  sys.exit(main())
