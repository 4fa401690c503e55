"""`python -m tools.asr_fusion_experiment`: multilingual shallow fusion with a dense or a GLaM LM
(Hu et al. 2023) at small scale, on espeak-ng speech in English, German, French and Spanish.

The paper fuses one multilingual GLaM LM into an end-to-end ASR model's beam search and finds
it beats a dense LM of similar inference compute (4.4% relative WER on English long-tail, 3.85%
over 50 languages). Here, each step a real command-line piece (a run whose MODEL_DIR already
holds its final checkpoint is reused, so an interrupted experiment resumes):

1. the speech data (`tools.build_asr_speech`'s config "default");
2. the tiny ASR model (gin/models/asr_tiny.gin) trained by `trainers.train` on
   `asr_multilingual_specaugment`;
3. two LMs trained by `trainers.train` on the ASR LM text of 8 languages: dense
   (decoder_only_tiny, FFN 384) and GLaM (top-2 of 8 experts in every other layer, FFN 256:
   the same activated FFN width per token on average, (256 + 2 x 256) / 2 = 384);
4. lambda and beta tuned per language and LM on the validation split (`tools.fusion_sweep`);
5. beam search (4 beams) over the test split (sentences neither model heard) and test_rare
   (test lines with a word the ASR transcripts lack and the LM text has): without fusion,
   with the dense LM, with GLaM.

Writes the JSON, a PNG and the table: WER per language and split, and the relative WER change
(fused - plain) / plain, as the paper reports it.
"""

import argparse
import os
import subprocess
import sys
from typing import Any, Optional, Sequence

from model_zoo.decoding import beam_search
from tools import benchmark_common, benchmark_train, fusion_sweep

ASR_FLAGS = (
    "--gin_file=gin/models/asr_tiny.gin",
    "--gin_file=gin/runs/pretrain.gin",
    "--gin_file=gin/mixtures/asr.gin",
    "--gin_file=gin/runs/asr.gin",
    "--gin.MIXTURE_OR_TASK_NAME='asr_multilingual_specaugment'",
    "--gin.TASK_FEATURE_LENGTHS={'inputs': 512, 'targets': 48}",
    "--gin.EVAL_PERIOD=1000",
    "--gin.CHECKPOINT_PERIOD=1000",
    "--gin.train.infer_eval_dataset_cfg=None",
)
LM_FLAGS = (
    "--gin_file=gin/runs/pretrain.gin",
    "--gin_file=gin/mixtures/asr_lm.gin",
    "--gin_file=gin/runs/short_run.gin",
    "--gin.BATCH_SIZE=32",
    "--gin.train.eval_dataset_cfg=None",
)
LMS = {
    "dense": ("--gin_file=gin/models/decoder_only_tiny.gin",),
    "glam": (
        "--gin_file=gin/models/glam_tiny.gin",
        "--gin.TransformerConfig.mlp_dim=256",
        "--gin.MoeConfig.num_experts=8",
    ),
}
# Trained on SpecAugment's mixture, evaluated on the plain one (the same held-out splits).
EVAL_MIXTURE = "MIXTURE_OR_TASK_NAME = 'asr_multilingual'"
SPLITS = ("test", "test_rare")
TITLE = "Shallow fusion on espeak-ng speech: WER by language (tiny ASR, beam 4)"


def _train(flags: Sequence[str], model_dir: str, steps: int) -> str:
  """Trains with `flags` into model_dir unless its final checkpoint is there already."""
  if os.path.isdir(os.path.join(model_dir, "checkpoints", str(steps))):
    print(f"reusing {model_dir} (step {steps})", flush=True)
    return model_dir
  command = [sys.executable, "-m", "trainers.train", *flags]
  command += [f"--gin.MODEL_DIR='{model_dir}'", f"--gin.TRAIN_STEPS={steps}"]
  print("running", " ".join(command), flush=True)
  subprocess.run(command, check=True)
  return model_dir


def _gin_files(flags: Sequence[str]) -> list[str]:
  return [f.split("=", 1)[1] for f in flags if f.startswith("--gin_file=")]


def _bindings(flags: Sequence[str], steps: int) -> list[str]:
  pairs = [f[len("--gin.") :].split("=", 1) for f in flags if f.startswith("--gin.")]
  return [f"{k} = {v}" for k, v in pairs] + [f"TRAIN_STEPS = {steps}"]


def run(args: argparse.Namespace) -> dict[str, Any]:
  from tasks.asr import speech_dataset  # pylint: disable=g-import-not-at-top  (TensorFlow)
  from trainers.dataset_config import DatasetConfig  # pylint: disable=g-import-not-at-top

  speech_dataset.prepare("default")
  out = args.out_dir
  asr_dir = _train(ASR_FLAGS, os.path.join(out, "asr"), args.asr_steps)
  lm_flags = {name: model + LM_FLAGS for name, model in LMS.items()}  # the model file first
  lm_dirs = {
      name: _train(flags, os.path.join(out, f"lm_{name}"), args.lm_steps)
      for name, flags in lm_flags.items()
  }
  results: dict[str, Any] = {"lms": {}, "tuned": {}, "wer": {}}
  restored = {}
  for name, flags in lm_flags.items():
    restored[name] = fusion_sweep.restore_runs(
        _gin_files(ASR_FLAGS),
        _bindings(ASR_FLAGS, args.asr_steps) + [EVAL_MIXTURE],
        asr_dir,
        _gin_files(flags),
        _bindings(flags, args.lm_steps),
        lm_dirs[name],
        "validation",
    )
    lm = restored[name].lm_model
    results["lms"][name] = benchmark_train.param_counts(
        restored[name].lm_params,
        lm.module.config.tie_embeddings,
        benchmark_train.transformer_fraction(lm.module.config),
    )
    tuned = fusion_sweep.sweep(restored[name], args.lm_weights, args.length_bonuses, args.beam_size)
    results["tuned"][name] = tuned
  languages = sorted(results["tuned"]["dense"]["best"])
  for split in SPLITS:
    for lang in languages:
      task = DatasetConfig(
          mixture_or_task_name=f"asr_{lang}",
          task_feature_lengths=restored["dense"].dataset.task_feature_lengths,
          split=split,
          batch_size=restored["dense"].dataset.batch_size,
          shuffle=False,
          pack=False,
          num_epochs=1,
      )
      decoders = {fusion_sweep.PLAIN: beam_search.BeamSearch(args.beam_size, 0.0)}
      for name in LMS:
        best = results["tuned"][name]["best"][lang]
        decoders[name] = fusion_sweep.fused(
            restored[name], best["lm_weight"], best["length_bonus"], args.beam_size
        )
      wer = fusion_sweep.word_error_rates(restored["dense"], decoders, task)[lang]
      results["wer"].setdefault(split, {})[lang] = wer
  results["relative"] = relative_changes(results["wer"])
  return results


def relative_changes(wer: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
  """Per split: each LM's relative WER change against no fusion, per language and averaged
  over languages (the mean of the per-language changes, as the paper averages), and GLaM's
  change against the dense LM."""
  out = {}
  for split, by_lang in wer.items():
    rel = {
        name: {lang: _relative(v[name], v[fusion_sweep.PLAIN]) for lang, v in by_lang.items()}
        for name in LMS
    }
    glam_vs_dense = {lang: _relative(v["glam"], v["dense"]) for lang, v in by_lang.items()}
    out[split] = {
        **{f"{name}_vs_plain": r for name, r in rel.items()},
        "glam_vs_dense": glam_vs_dense,
        "mean": {
            **{f"{name}_vs_plain": _mean(r.values()) for name, r in rel.items()},
            "glam_vs_dense": _mean(glam_vs_dense.values()),
        },
    }
  return out


def _relative(value: float, base: float) -> Optional[float]:
  return None if base == 0 else 100.0 * (value - base) / base


def _mean(values) -> Optional[float]:
  known = [v for v in values if v is not None]
  return sum(known) / len(known) if known else None


def format_table(r: dict[str, Any]) -> str:
  def pct(x):
    return "   n/a" if x is None else f"{x:+6.1f}%"

  lines = [TITLE, ""]
  for name, counts in r["lms"].items():
    lines.append(
        f"{name} LM: {counts['params_total'] / 1e6:.2f}M parameters, "
        f"{counts['params_activated'] / 1e6:.2f}M activated per token"
    )
  lines.append("")
  lines.append(
      f"{'split':<10}{'lang':<6}{'plain':>8}{'dense':>8}{'glam':>8}"
      f"{'dense rel':>11}{'glam rel':>10}{'glam/dense':>12}"
  )
  for split, by_lang in r["wer"].items():
    rel = r["relative"][split]
    for lang, v in sorted(by_lang.items()):
      lines.append(
          f"{split:<10}{lang:<6}{v['beam']:>8.2f}{v['dense']:>8.2f}{v['glam']:>8.2f}"
          f"{pct(rel['dense_vs_plain'][lang]):>11}{pct(rel['glam_vs_plain'][lang]):>10}"
          f"{pct(rel['glam_vs_dense'][lang]):>12}"
      )
    mean = rel["mean"]
    lines.append(
        f"{split:<10}{'mean':<6}{'':>24}{pct(mean['dense_vs_plain']):>11}"
        f"{pct(mean['glam_vs_plain']):>10}{pct(mean['glam_vs_dense']):>12}"
    )
  lines.append("")
  for name, tuned in r["tuned"].items():
    pairs = ", ".join(
        f"{lang} lambda {b['lm_weight']:g} beta {b['length_bonus']:g}"
        for lang, b in tuned["best"].items()
    )
    lines.append(f"tuned on validation, {name}: {pairs}")
  return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  splits = list(r["wer"])
  fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 3.8), squeeze=False)
  for ax, split in zip(axes[0], splits):
    langs = sorted(r["wer"][split])
    for offset, name in enumerate(("beam", "dense", "glam")):
      values = [r["wer"][split][lang][name] for lang in langs]
      label = {"beam": "no fusion", "dense": "dense LM", "glam": "GLaM LM"}[name]
      ax.bar([i + 0.27 * (offset - 1) for i in range(len(langs))], values, 0.27, label=label)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_ylabel("WER (%)")
    ax.set_title(split)
    ax.legend(fontsize=7)
  fig.suptitle(TITLE, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m tools.asr_fusion_experiment", description=__doc__
  )
  parser.add_argument("--out_dir", required=True, help="where the runs go (reused if there)")
  parser.add_argument("--asr_steps", type=int, default=3000)
  parser.add_argument("--lm_steps", type=int, default=2000)
  parser.add_argument("--lm_weights", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5])
  parser.add_argument("--length_bonuses", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5])
  parser.add_argument("--beam_size", type=int, default=4)
  parser.add_argument("--json_out", default="asr_fusion_experiment.json")
  parser.add_argument("--plot", default="asr_fusion_experiment.png")
  args = parser.parse_args(argv)
  if min(args.asr_steps, args.lm_steps, args.beam_size) < 1 or min(args.lm_weights) < 0:
    parser.error("steps and the beam size must be >= 1, every lambda >= 0")
  return benchmark_common.finish_experiment(run, args, plot, format_table)


if __name__ == "__main__":
  sys.exit(main())
