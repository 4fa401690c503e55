"""Experiment: SPAE (Yu et al. 2023) at CPU scale: a frozen zoo LM reads and writes
handwritten digits as words of its own vocabulary.

  python -m tools.spae_experiment [--lm_dir DIR | --lm_steps 800] [--steps 600] \
      [--batch_size 32] [--eval_images 256] [--classify_examples 200] [--shots 1 4] \
      [--variants SPAE ...] [--lm_binding B ...] [--spae_binding B ...] [--context_depth 1] \
      [--out_dir DIR] [--json_out FILE] [--plot FILE]

1. The frozen LM: decoder_only_tiny, a causal LM on the catalog text (gin/mixtures/
   catalog_lm.gin, the pre-training vocabulary), trained through `python -m trainers.train`
   for --lm_steps, unless --lm_dir names such a run (e.g. tools/objectives_experiment's
   causal LM).
2. Two SPAE models, each trained through the train CLI (gin/models/spae.gin at CPU sizes,
   gin/runs/spae.gin, gin/mixtures/spae_digits.gin: scikit-learn's digits with their
   English names) with the LM's input embeddings as the frozen codebook:
   * "SPAE": the semantic loss pulls pyramid layer 1 toward the nearest piece of the digit's
     name;
   * "no semantic loss": the same with semantic_weight 0, streaming average quantization onto
     the LM's vocabulary with reconstruction alone (the baseline: a frozen-LM codebook whose
     tokens need not mean anything, as LQAE's).
   At CPU scale the codebook is the LM's 4,605 most frequent pieces (ids 3..4607, every
   piece of the English digit names among them), latent width 128, 16 base channels.
3. Scored on the held-out test digits (never trained on):
   * reconstruction MSE from every pyramid depth (1, 5, 21 and 85 tokens);
   * semantic hit: how often layer 1's one token is a piece of the digit's name;
   * few-shot classification through `python -m trainers.spae_lm`: K solved examples of
     each of the 10 digits ("image token : name ;", layer 1), then the query; the LM's
     answer is the name it finds most likely, and calibrated, the name the image makes most
     likely over the same prompt without an image; beside the majority class (chance);
   * generation: the LM writes the tokens of each digit name's image (PNG grids);
   * reconstructions of the first 8 test digits from every depth (<out_dir>/<model>/
     reconstructions.png: a row per digit, the digit then depths 1-4).

--lm_binding adds a binding to the LM's training (e.g. "TransformerConfig.emb_dim = 64"); its
TransformerConfig ones also go, under lm/, to the frozen LM that trainers.spae_lm reads.
--spae_binding adds a binding to every SPAE run (e.g. "SpaeConfig.channels = 8");
--context_depth sets the pyramid layers of each image in the prompts.
tests/tools/test_spae_experiment.py trains its tiny models so.

SPAE's claims tested: its lexical tokens let a frozen LM understand images in context
(classification far above chance, and above tokens without semantics), and every prefix of
the pyramid is an image (reconstruction improves with depth). Writes a JSON of every score, a
PNG (MSE by depth; accuracy by shots) and prints a table; the runs' grids go to --out_dir.
"""

import argparse
import json
import os
import sys
import tempfile
from typing import Any, Optional, Sequence

import gin
import jax
import numpy as np

from tools import benchmark_common, moe_experiment
from trainers import image_files, spae_lm

LM_GIN_FILES = (
    "gin/models/decoder_only_tiny.gin",
    "gin/runs/pretrain.gin",
    "gin/runs/short_run.gin",
    "gin/mixtures/catalog_lm.gin",
)
SPAE_GIN_FILES = (
    "gin/models/spae.gin",
    "gin/runs/pretrain.gin",
    "gin/mixtures/spae_digits.gin",
    "gin/runs/spae.gin",
)
CPU_SIZES = ("SpaeConfig.channels = 16", "SpaeConfig.last_code_id = 4608")
VARIANTS = {"SPAE": (), "no semantic loss": ("SpaeConfig.semantic_weight = 0.0",)}
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
EVAL_ROWS = 64
GRID_IMAGES = 8  # test digits in each model's reconstruction grid
_configured_model = benchmark_common.model_configurable("spae_experiment")


def spae_bindings(lm_dir: str, bindings: Sequence[str]) -> list[str]:
  """One SPAE run's gin bindings beside SPAE_GIN_FILES: CPU sizes, the variant's, the LM."""
  return [*CPU_SIZES, *bindings, f"INITIAL_CHECKPOINT_PATH = '{lm_dir}'"]


def spae_flags(lm_dir: str, model_dir: str, bindings: Sequence[str], steps: int) -> list[str]:
  """The run's flags as trainers.spae_lm is given them (the train CLI's, without its
  schedule of evaluations and checkpoints)."""
  return [f"--gin_file={f}" for f in SPAE_GIN_FILES] + [
      f"--gin.{b.replace(' = ', '=')}"
      for b in (
          *spae_bindings(lm_dir, bindings),
          f"MODEL_DIR = '{model_dir}'",
          f"TRAIN_STEPS = {steps}",
      )
  ]


def test_digits(count: int) -> tuple[np.ndarray, list[tuple[int, ...]]]:
  """The first `count` test images [count, 32, 32, 3] and their names' LM ids."""
  import seqio  # pylint: disable=g-import-not-at-top  (TensorFlow: only when scoring)

  import tasks.spae.tasks  # noqa: F401  pylint: disable=g-import-not-at-top  (registers)

  task = seqio.get_mixture_or_task("spae_digits_en")
  ds = task.get_dataset({"image": 32, "targets": 4}, split="test", shuffle=False)
  images, words = [], []
  for ex in ds.take(count).as_numpy_iterator():
    images.append(ex["image"])
    words.append(tuple(int(t) for t in ex["targets"]))
  return np.stack(images), words


def restored_spae(model_dir: str, bindings: Sequence[str]):
  gin.clear_config()
  model = benchmark_common.load_model(
      ["gin/models/spae.gin"],
      moe_experiment.REPO_ROOT,
      [*CPU_SIZES, *bindings],
      _configured_model,
      "spae_experiment",
  )
  batch = {"image": np.zeros((1, 32, 32, 3), np.float32)}
  return model, benchmark_common.newest_params(model, model_dir, batch)


def image_scores(model, params, images: np.ndarray, words) -> dict[str, Any]:
  """Reconstruction MSE per depth and layer 1's semantic hit rate on `images`."""
  reconstruct, encode = jax.jit(model.reconstruct), jax.jit(model.encode)
  squared, hits = [], []
  for start in range(0, len(images), EVAL_ROWS):
    chunk = images[start : start + EVAL_ROWS]
    padded = np.concatenate([chunk, np.zeros((EVAL_ROWS - len(chunk),) + chunk.shape[1:], "f4")])
    outputs = np.asarray(reconstruct(params, padded))[:, : len(chunk)]
    squared.append(np.mean((outputs - chunk[None]) ** 2, axis=(2, 3, 4)))
    tokens = np.asarray(encode(params, padded))[: len(chunk), 0]
    hits += [int(t in w) for t, w in zip(tokens, words[start : start + EVAL_ROWS])]
  per_depth = np.concatenate(squared, axis=1).mean(axis=1)
  return {"mse_by_depth": per_depth.tolist(), "semantic_hit": float(np.mean(hits))}


def reconstruction_grid(model, params, images: np.ndarray, path: str) -> None:
  """A PNG of one row per image: the image, then its reconstruction from each pyramid
  depth."""
  outputs = np.asarray(jax.jit(model.reconstruct)(params, images))  # [depths, n, ...]
  image_files.write_grid(
      path, [[image, *depths] for image, depths in zip(images, outputs.swapaxes(0, 1))]
  )


def in_context(flags: Sequence[str], lm_dir: str, out_dir: str, shots: int, args) -> dict:
  """trainers.spae_lm's few-shot classification of test digits (and, with 1 shot, the
  generated images); its JSON."""
  extra = [
      "--gin_file=gin/runs/spae_lm.gin",
      "--gin_file=gin/models/spae_frozen_lm_tiny.gin",
      *(
          f"--gin.lm/{b.replace(' = ', '=')}"
          for b in args.lm_binding
          if b.startswith("TransformerConfig.")
      ),
      f"--gin.spae_lm.context_depth={args.context_depth}",
      f"--gin.LM_DIR='{lm_dir}'",
      "--gin.validation/DatasetConfig.split='test'",
      f"--gin.spae_lm.classify_examples={args.classify_examples}",
      f"--gin.spae_lm.shots_per_class={shots}",
      f"--gin.spae_lm.output_dir='{out_dir}'",
  ]
  if shots == 1:
    extra.append(f"--gin.spae_lm.generate_words={list(DIGIT_NAMES)}")
  cwd = os.getcwd()
  os.chdir(moe_experiment.REPO_ROOT)
  try:
    code = spae_lm.main([*flags, *extra])
  finally:
    os.chdir(cwd)
  if code:
    raise RuntimeError(f"trainers.spae_lm failed (exit {code}) on {out_dir}")
  with open(os.path.join(out_dir, "spae_lm.json"), encoding="utf-8") as f:
    return json.load(f)


def run(args: argparse.Namespace) -> dict[str, Any]:
  from tasks.spae import image_dataset  # pylint: disable=g-import-not-at-top  (TensorFlow)

  image_dataset.prepare("digits")  # seconds, once: the tasks read it
  out_dir = args.out_dir or tempfile.mkdtemp(prefix="spae_experiment_")
  lm_dir = args.lm_dir
  if lm_dir is None:
    lm_dir = os.path.join(out_dir, "lm")
    lm_args = argparse.Namespace(
        steps=args.lm_steps, batch_size=16, eval_period=args.lm_steps, eval_steps=10
    )
    moe_experiment.train("frozen LM", LM_GIN_FILES, args.lm_binding, lm_args, lm_dir)
  images, words = test_digits(args.eval_images)
  results: dict[str, Any] = {"lm_dir": lm_dir, "eval_images": len(images), "variants": {}}
  for name in args.variants:
    bindings = [*args.spae_binding, *VARIANTS[name]]
    model_dir = os.path.join(out_dir, name.replace(" ", "_"))
    train_args = argparse.Namespace(
        steps=args.steps, batch_size=args.batch_size, eval_period=args.steps, eval_steps=4
    )
    moe_experiment.train(
        name, SPAE_GIN_FILES, spae_bindings(lm_dir, bindings), train_args, model_dir
    )
    flags = spae_flags(lm_dir, model_dir, bindings, args.steps)
    model, params = restored_spae(model_dir, bindings)
    scores = image_scores(model, params, images, words)
    reconstruction_grid(
        model, params, images[:GRID_IMAGES], os.path.join(model_dir, "reconstructions.png")
    )
    scores["few_shot"] = {}
    for shots in args.shots:
      report = in_context(
          flags, lm_dir, os.path.join(model_dir, f"spae_lm_{shots}shot"), shots, args
      )
      scores["few_shot"][str(shots)] = report["classify"]
    results["variants"][name] = scores
  return results


def format_table(r: dict[str, Any]) -> str:
  rows = [
      f"SPAE at CPU scale: {r['eval_images']} held-out test digits; few-shot: 10-way, "
      "the frozen LM scores each digit name",
      f"{'model':<18} {'MSE depth 1 / 2 / 3 / 4':<34} {'layer-1 hit':>11}  few-shot accuracy",
  ]
  for name, s in r["variants"].items():
    mse = " / ".join(f"{v:.4f}" for v in s["mse_by_depth"])
    shots = ", ".join(
        f"{k}-shot {v['accuracy']:.3f} / calibrated {v['calibrated_accuracy']:.3f} "
        f"(majority {v['majority_class']:.3f})"
        for k, v in s["few_shot"].items()
    )
    rows.append(f"{name:<18} {mse:<34} {s['semantic_hit']:>11.3f}  {shots}")
  return "\n".join(rows)


def plot(r: dict[str, Any], path: str) -> None:
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top

  figure, (mse, accuracy) = pyplot.subplots(1, 2, figsize=(11, 4))
  for name, s in r["variants"].items():
    depths = range(1, len(s["mse_by_depth"]) + 1)
    mse.plot(depths, s["mse_by_depth"], marker="o", label=name)
  mse.set(xlabel="pyramid depth (layers of tokens)", ylabel="test MSE", title="Reconstruction")
  mse.legend()
  names = list(r["variants"])
  shot_counts = list(next(iter(r["variants"].values()))["few_shot"])
  x = np.arange(len(shot_counts))
  for i, name in enumerate(names):
    few_shot = r["variants"][name]["few_shot"]
    calibrated = [few_shot[k]["calibrated_accuracy"] for k in shot_counts]
    bars = accuracy.bar(x + (i - 0.5) * 0.4, calibrated, 0.4, label=f"{name}, calibrated")
    raw = [few_shot[k]["accuracy"] for k in shot_counts]
    accuracy.plot(
        x + (i - 0.5) * 0.4, raw, "v", color=bars.patches[0].get_facecolor(), markeredgecolor="k"
    )
  accuracy.plot([], [], "v", color="w", markeredgecolor="k", label="uncalibrated")
  majority = next(iter(r["variants"].values()))["few_shot"][shot_counts[0]]["majority_class"]
  accuracy.axhline(majority, color="grey", linestyle="--", label="majority class")
  accuracy.set_xticks(x, [f"{k}-shot" for k in shot_counts])
  accuracy.set(ylabel="accuracy", title="In-context classification by the frozen LM")
  accuracy.legend()
  figure.suptitle("SPAE: digits as words of a frozen LM's vocabulary (CPU scale)")
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=120)
  pyplot.close(figure)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tools.spae_experiment", description=__doc__)
  parser.add_argument("--lm_dir", default=None, help="a catalog LM run (decoder_only_tiny)")
  parser.add_argument("--lm_steps", type=int, default=800)
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--eval_images", type=int, default=256)
  parser.add_argument("--classify_examples", type=int, default=200)
  parser.add_argument("--shots", type=int, nargs="+", default=[1, 4])
  parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
  parser.add_argument(
      "--lm_binding", action="append", default=[], help="e.g. TransformerConfig.X = Y"
  )
  parser.add_argument("--spae_binding", action="append", default=[], help="e.g. SpaeConfig.X = Y")
  parser.add_argument("--context_depth", type=int, default=1, help="pyramid layers per image")
  parser.add_argument("--out_dir", default=None, help="the runs' MODEL_DIRs go here")
  parser.add_argument("--json_out", default="spae_experiment.json")
  parser.add_argument("--plot", default="spae_experiment.png")
  args = parser.parse_args(argv)
  benchmark_common.require_positive(
      parser,
      args,
      ("lm_steps", "steps", "batch_size", "eval_images", "classify_examples", "context_depth"),
  )
  if min(args.shots) < 1:
    parser.error(f"--shots must be >= 1; got {args.shots}")
  return benchmark_common.finish_experiment(run, args, plot, format_table)


if __name__ == "__main__":
  sys.exit(main())
