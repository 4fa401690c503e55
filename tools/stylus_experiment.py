"""Experiment: Stylus's adapter choice against the base model, random adapters and the
retriever alone, on held-out prompts of the catalog's own tasks.

  python -m tools.stylus_experiment --base_dir BASE_MODEL_DIR --catalog_dir DIR \
      [--per_task 4] [--top_k 8] [--per_keyword 2] [--min_gain 0] [--k 2] \
      [--max_new_tokens 48] [--seed 0] [--json_out stylus_experiment.json] \
      [--plot stylus_experiment.png]

The catalog is tools/build_adapter_catalog.py's (built from --base_dir). Held-out prompts: the
first --per_task validation examples of each catalog adapter's task (Flan instructions; a
language's catalog text, Genesis or spoken-form text to continue after UL2's S token). For
each prompt, four ways of adapting the base, each merged as Stylus merges (weights divided
among a keyword's adapters, times each adapter's alpha / rank):
  base       no adapter;
  random     --k adapters drawn from the catalog (seeded), one keyword;
  retriever  the --k adapters whose refined descriptions are nearest the prompt, one keyword;
  stylus     retriever (--top_k) + composer (per keyword at most --per_keyword, by likelihood
             gain over the base above --min_gain nats/token), every kept adapter merged,
             each keyword at weight 1 (Stylus's scheme: k keywords add k adapters' worth);
  stylus_mean  the same adapters, each keyword that keeps any at weight 1 / (their number),
             so the merged adapters weigh 1 in all.
Scores, per way: the reference's log-likelihood (nats per token, given the prompt); on greedy
continuations of at most --max_new_tokens tokens, corpus chrF where the task is translation
or text, and exact-match accuracy for the other instruction tasks (the final answer of a
chain of thought); and how often the prompt's own task's adapter was among those merged.
Writes a JSON, a PNG (one panel per score) and prints a table and the claims: Stylus above
each other way in likelihood and in the task metrics.
"""

import argparse
import dataclasses
import itertools
import os
import random
from typing import Any, Optional, Sequence

import numpy as np

from model_zoo.errors import MissingFileError
from tasks import metrics
from tasks.flan import templates
from tasks.pretraining import vocabulary
from tools import adapter_catalog_tasks as catalog_tasks
from tools import benchmark_common
from tools import build_adapter_catalog as build
from trainers.stylus import masks
from trainers.stylus.generate import Stylus, prompt_masks

TITLE = "Stylus at small scale: adapters chosen for held-out prompts"
METHODS = ("base", "random", "retriever", "stylus", "stylus_mean")
STYLUS_WAYS = ("stylus", "stylus_mean")
SCORES = ("nats_per_token", "chrf", "accuracy", "right_adapter")
LENGTH = 512  # every prompt + continuation fits (Flan few-shot prompts: at most 384 tokens)
BUCKET = 64  # decode lengths round up to a multiple: few compilations, few wasted steps


@dataclasses.dataclass(frozen=True)
class Prompt:
  adapter: str  # the catalog adapter trained on this prompt's task
  task: str
  text: str  # what retrieval and the composer read (the prompt without a mode token)
  ids: tuple[int, ...]  # what the model reads
  target: str
  target_ids: tuple[int, ...]  # EOS included


def held_out_prompts(cards: dict[str, dict], per_task: int, seed: int) -> list[Prompt]:
  """The first `per_task` validation examples of each adapter's task that have a prompt
  (the S-denoiser's seeded cut may leave none); `seed` fixes the denoisers' randomness."""
  import seqio  # pylint: disable=import-outside-toplevel  (TensorFlow: only when run)

  vocab = vocabulary.pretraining_vocabulary()
  mode_tokens = {vocabulary.mode_id(mode) for mode in vocabulary.MODES}
  prompts = []
  for name in sorted(cards):
    task = cards[name]["task"]
    (spec,) = [a for a in catalog_tasks.ADAPTERS if a.task == task]
    dataset = seqio.get_mixture_or_task(task).get_dataset(
        dict(spec.lengths), split="validation", shuffle=False, seed=seed
    )
    kept = 0
    for example in dataset.as_numpy_iterator():
      inputs, targets = [int(t) for t in example["inputs"]], [int(t) for t in example["targets"]]
      text = vocab.decode([t for t in inputs if t not in mode_tokens])
      if not text.strip():
        continue
      kept += 1
      prompts.append(
          Prompt(
              name,
              task,
              text,
              tuple(inputs),
              vocab.decode([t for t in targets if t != vocab.eos_id]),
              tuple(targets),
          )
      )
      if kept == per_task:
        break
  return prompts


def mask_of(method: str, prompt: Prompt, stylus: Stylus, k: int, rng: random.Random) -> dict:
  """The masks.Mask each way merges for `prompt`."""
  if method == "base":
    return {}
  if method == "random":
    return {prompt.text: tuple(rng.sample(sorted(stylus.entries), k))}
  if method == "retriever":
    query = stylus.embedder.embed([prompt.text])[0]
    nearest = stylus.index.top_k(query, k, stylus.embedder.name)
    return {prompt.text: tuple(name for name, _ in nearest if name in stylus.entries)}
  return prompt_masks(stylus.choose(prompt.text), 0, 0)[0]  # both Stylus ways


def keyword_weights(method: str, mask: dict) -> Optional[dict[str, float]]:
  """stylus_mean's keyword weights: 1 / (keywords that keep an adapter) each, so the merged
  adapters' weights sum to 1; None (each keyword 1) for the other ways."""
  kept = [k for k, adapters in mask.items() if adapters]
  return {k: 1.0 / len(kept) for k in kept} if method == "stylus_mean" and kept else None


def score_prompt(stylus: Stylus, params: Any, prompt: Prompt, max_new_tokens: int) -> dict:
  """The reference's nats per token and the greedy continuation's text."""
  total = stylus.log_likelihood(params, prompt.ids, prompt.target_ids, LENGTH)
  length = min(LENGTH, -(-(len(prompt.ids) + max_new_tokens) // BUCKET) * BUCKET)
  ids, _ = stylus.continue_prompt(params, prompt.ids, length)
  vocab = vocabulary.pretraining_vocabulary()
  generated = []
  for t in ids[:max_new_tokens]:
    if t == vocab.eos_id:
      break
    generated.append(t)
  return {"nats_per_token": -total / len(prompt.target_ids), "output": vocab.decode(generated)}


def task_scores(prompts: Sequence[Prompt], rows: Sequence[dict]) -> dict[str, Optional[float]]:
  """chrF over the translation and text prompts; accuracy (%) over the other Flan prompts."""
  chrf_pairs, right = [], []
  for prompt, row in zip(prompts, rows):
    kind = catalog_tasks.metric_of(prompt.task)
    if kind == "chrf":
      chrf_pairs.append((prompt.target, row["output"]))
    else:
      final = templates.final_answer if kind == "cot_accuracy" else (lambda s: s)
      right.append(final(row["output"]).strip() == final(prompt.target).strip())
  chrf = metrics.chrf(*zip(*chrf_pairs))["chrf"] if chrf_pairs else None
  return {"chrf": chrf, "accuracy": 100.0 * float(np.mean(right)) if right else None}


def run(args: argparse.Namespace) -> dict[str, Any]:
  model, params = build.load_base(args.base_dir)
  encode = vocabulary.pretraining_vocabulary().encode
  stylus = Stylus(
      model, params, args.catalog_dir, encode, args.top_k, args.per_keyword, args.min_gain
  )
  if len(stylus.entries) < args.k:
    raise MissingFileError(
        f"the catalog has {len(stylus.entries)} adapters; --k={args.k} needs more"
    )
  prompts = held_out_prompts(
      {n: e.card for n, e in stylus.entries.items()}, args.per_task, args.seed
  )
  rng = random.Random(args.seed)
  results = {}
  for method in METHODS:
    rows = []
    for prompt in prompts:
      mask = mask_of(method, prompt, stylus, args.k, rng)
      kw = keyword_weights(method, mask)
      weights = masks.merge_weights(mask, kw)
      row = score_prompt(stylus, stylus.params_for(mask, kw), prompt, args.max_new_tokens)
      rows.append({**row, "adapters": weights, "right_adapter": prompt.adapter in weights})
      print(f"{method:9s} {prompt.adapter:22s} {sorted(weights)} {row['nats_per_token']:.3f}")
    results[method] = {
        "nats_per_token": float(np.mean([r["nats_per_token"] for r in rows])),
        "right_adapter": 100.0 * float(np.mean([r["right_adapter"] for r in rows])),
        "adapters_merged": float(np.mean([len(r["adapters"]) for r in rows])),
        **task_scores(prompts, rows),
        "rows": rows,
    }
  return {
      "settings": dict(vars(args)),
      "prompts": [dataclasses.asdict(p) for p in prompts],
      "skipped": stylus.skipped,
      "methods": results,
      "claims": claims(results),
  }


def claims(results: dict[str, dict]) -> list[dict[str, Any]]:
  """Stylus against each other way on each score (lower nats per token is better)."""
  out = []
  for way, other in itertools.product(STYLUS_WAYS, METHODS[:3]):
    for score in ("nats_per_token", "chrf", "accuracy"):
      mine, theirs = results[way][score], results[other][score]
      if mine is None or theirs is None:
        continue
      better = mine < theirs if score == "nats_per_token" else mine > theirs
      out.append(
          {
              "claim": f"{way} beats {other} on {score}",
              way: mine,
              other: theirs,
              "reproduced": bool(better),
          }
      )
  return out


def _cell(value: Optional[float]) -> str:
  return "" if value is None else f"{value:.3f}"


def format_table(r: dict[str, Any]) -> str:
  rows = [
      "| way | nats/token (lower is better) | chrF | accuracy % | own adapter merged % | "
      "adapters merged |",
      "|---|---|---|---|---|---|",
  ]
  for method, m in r["methods"].items():
    rows.append(
        f"| {method} | {_cell(m['nats_per_token'])} | {_cell(m['chrf'])} | "
        f"{_cell(m['accuracy'])} | {m['right_adapter']:.1f} | {m['adapters_merged']:.2f} |"
    )
  rows.append("")
  for c in r["claims"]:
    rows.append(f"{c['claim']}: {'reproduced' if c['reproduced'] else 'not reproduced'}")
  return "\n".join(rows)


def plot(r: dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel  (the [experiments] extra)

  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  figure, axes = pyplot.subplots(1, len(SCORES), figsize=(3.2 * len(SCORES), 3.4))
  labels = {
      "nats_per_token": "reference nats/token",
      "chrf": "chrF (translation, text)",
      "accuracy": "accuracy % (instructions)",
      "right_adapter": "own adapter merged %",
  }
  for axis, score in zip(axes, SCORES):
    values = [r["methods"][m][score] or 0.0 for m in METHODS]
    axis.bar(METHODS, values, color=["grey", "tab:orange", "tab:blue", "tab:green", "tab:olive"])
    axis.set_title(labels[score], fontsize=9)
    axis.tick_params(axis="x", labelsize=8)
  figure.suptitle(TITLE)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  pyplot.close(figure)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tools.stylus_experiment", description=__doc__)
  parser.add_argument("--base_dir", required=True)
  parser.add_argument("--catalog_dir", required=True)
  parser.add_argument("--per_task", type=int, default=4)
  parser.add_argument("--top_k", type=int, default=8)
  parser.add_argument("--per_keyword", type=int, default=2)
  parser.add_argument("--min_gain", type=float, default=0.0)
  parser.add_argument("--k", type=int, default=2, help="adapters of `random` and `retriever`")
  parser.add_argument("--max_new_tokens", type=int, default=48)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json_out", default="stylus_experiment.json")
  parser.add_argument("--plot", default="stylus_experiment.png")
  args = parser.parse_args(argv)
  benchmark_common.require_positive(
      parser, args, ("per_task", "top_k", "per_keyword", "k", "max_new_tokens")
  )
  args.base_dir, args.catalog_dir = map(os.path.abspath, (args.base_dir, args.catalog_dir))
  return benchmark_common.finish_experiment(run, args, plot, format_table)


if __name__ == "__main__":
  raise SystemExit(main())
