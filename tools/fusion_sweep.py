"""`python -m tools.fusion_sweep`: tunes shallow fusion's lambda and beta per language on a dev split.

Restores an ASR model (its run's `--gin_file` flags and `--gin.` overrides, `--model_dir`) and
a language model (`--lm_gin_file` flags of its own run, `--lm_dir`), then decodes the split
of the ASR run's infer_eval dataset (every language's task of the mixture) with beam search,
plain and fused at each (lambda, beta) of the grid: each hypothesis scores
log p_ASR(y|x) + lambda log p_LM(y) + beta |y|. Per language it picks the pair with the
lowest WER (ties: the smaller lambda, then beta), prints the table, writes the JSON and a
gin file of `LM_WEIGHTS` and `LENGTH_BONUSES` to include after gin/runs/asr_fusion.gin:

  python -m tools.fusion_sweep --gin_file=gin/models/asr_tiny.gin \\
    --gin_file=gin/runs/pretrain.gin --gin_file=gin/mixtures/asr.gin \\
    --gin_file=gin/runs/asr.gin --gin.TRAIN_STEPS=3000 --model_dir=/tmp/asr \\
    --lm_gin_file=gin/models/decoder_only_tiny.gin --lm_dir=/tmp/asr_lm \\
    --gin_out=/tmp/fusion_weights.gin
"""

import argparse
import dataclasses
import itertools
import sys
from typing import Any, Optional, Sequence

import gin

from model_zoo.decoding import beam_search, lm_fusion
from tools import benchmark_common
from trainers import partitioning, restore
from trainers import train  # noqa: F401  (registers train(), which the run configs bind)
from trainers.dataset_config import DatasetConfig
from trainers.trainer import Trainer

RUN_MODEL = benchmark_common.model_configurable("fusion_sweep")
PLAIN = "beam"


@dataclasses.dataclass(frozen=True)
class Restored:
  """An ASR model and an LM restored from their runs, and the ASR run's eval dataset."""

  asr_model: Any
  asr_params: Any
  lm_model: Any
  lm_params: Any
  dataset: DatasetConfig
  partitioner: partitioning.Partitioner


def restore_runs(
    asr_gin_files: Sequence[str],
    asr_bindings: Sequence[str],
    model_dir: str,
    lm_gin_files: Sequence[str],
    lm_bindings: Sequence[str],
    lm_dir: str,
    split: str,
) -> Restored:
  """Each model built from its own run's gin config (parsed one after the other, so neither
  run's bindings reach the other's model) and restored from its newest checkpoint."""
  from trainers import data  # pylint: disable=g-import-not-at-top  (SeqIO: when a run starts)

  lm_model = _run_model(lm_gin_files, lm_bindings, lm_dir)
  _, lm_params = restore.restore_params(lm_model, lm_dir)
  asr_model = _run_model(asr_gin_files, asr_bindings, model_dir)
  with gin.config_scope("infer_eval"):
    dataset = dataclasses.replace(DatasetConfig(), split=split)
  partitioner = partitioning.Partitioner()
  trainer = Trainer(model=asr_model, partitioner=partitioner)
  shapes = data.global_batch_shapes(dataset, asr_model.FEATURE_CONVERTER_CLS)
  asr_params = restore.restore_state(trainer, model_dir, shapes).params
  gin.clear_config()
  return Restored(asr_model, asr_params, lm_model, lm_params, dataset, partitioner)


def _run_model(gin_files: Sequence[str], bindings: Sequence[str], model_dir: str):
  """The MODEL of a run's gin config alone (the config parsed afresh; it stays parsed, for
  what restoring builds from it)."""
  gin.clear_config()
  bindings = [*bindings, f"MODEL_DIR = '{model_dir}'"]
  return benchmark_common.load_model(gin_files, "", bindings, RUN_MODEL, "fusion_sweep")


def add_run_arguments(parser: argparse.ArgumentParser, split: str) -> None:
  """The flags naming the two runs a fusion tool restores, and the split it reads."""
  parser.add_argument("--model_dir", required=True, help="the ASR run's MODEL_DIR")
  parser.add_argument("--lm_gin_file", action="append", required=True, help="the LM run's")
  parser.add_argument("--lm_binding", action="append", default=[], help="NAME=VALUE, repeatable")
  parser.add_argument("--lm_dir", required=True, help="the LM run's MODEL_DIR")
  parser.add_argument("--split", default=split)


def restore_from_args(args: argparse.Namespace, bindings: Sequence[str]) -> Restored:
  """`restore_runs` of the flags of `add_run_arguments` (and the ASR run's gin overrides)."""
  lm_bindings = [b.replace("=", " = ", 1) for b in args.lm_binding]
  return restore_runs(
      args.gin_file,
      bindings,
      args.model_dir,
      args.lm_gin_file,
      lm_bindings,
      args.lm_dir,
      args.split,
  )


def fused(restored: Restored, weight: float, bonus: float, beam_size: int):
  """Beam search (no length penalty: beta balances length) with the LM fused in."""
  return lm_fusion.ShallowFusion(
      lm=lm_fusion.FusedLM(restored.lm_model, restored.lm_params, weight),
      decoder=beam_search.BeamSearch(beam_size=beam_size, alpha=0.0),
      length_bonus=bonus,
  )


def word_error_rates(
    restored: Restored, decoders: dict[str, Any], dataset: Optional[DatasetConfig] = None
) -> dict[str, dict[str, float]]:
  """language -> decoder name -> WER (%) on `dataset` (default: the restored one)."""
  from trainers import data  # pylint: disable=g-import-not-at-top

  first, *rest = decoders
  metrics = data.TaskMetrics(
      restored.asr_model,
      restored.partitioner,
      dataset or restored.dataset,
      decoders[first],
      {name: decoders[name] for name in rest},
  )(restored.asr_params)
  return {
      language(task): {name: values["wer" if name == first else f"{name}/wer"] for name in decoders}
      for task, values in metrics.items()
  }


def language(task: str) -> str:
  """The language of an ASR task ("asr_de", "asr_tiny_de", "asr_de_specaugment" -> "de")."""
  from tasks.asr import tasks as asr_tasks  # pylint: disable=g-import-not-at-top  (TensorFlow)

  return task.removesuffix(asr_tasks.SPECAUGMENT_SUFFIX).split("_")[-1]


def sweep(
    restored: Restored,
    weights: Sequence[float],
    bonuses: Sequence[float],
    beam_size: int,
) -> dict[str, Any]:
  """WER of plain and fused beam search at each grid point, and each language's best pair."""
  grid = list(itertools.product(weights, bonuses))
  decoders = {PLAIN: beam_search.BeamSearch(beam_size=beam_size, alpha=0.0)}
  decoders.update({_name(w, b): fused(restored, w, b, beam_size) for w, b in grid})
  wer = word_error_rates(restored, decoders)
  best = {}
  for lang, values in sorted(wer.items()):
    w, b = min(grid, key=lambda wb: (values[_name(*wb)], wb))
    best[lang] = {
        "lm_weight": w,
        "length_bonus": b,
        "wer": values[_name(w, b)],
        "plain": values[PLAIN],
    }
  return {"grid": [list(p) for p in grid], "wer": wer, "best": best}


def _name(weight: float, bonus: float) -> str:
  return f"fused_l{weight:g}_b{bonus:g}"


def gin_text(best: dict[str, dict[str, float]]) -> str:
  """The tuned tables as gin bindings for gin/runs/asr_fusion.gin."""
  weights = {lang: v["lm_weight"] for lang, v in best.items()}
  bonuses = {lang: v["length_bonus"] for lang, v in best.items()}
  return (
      "# Shallow fusion weights tuned by tools/fusion_sweep.py; include after "
      "gin/runs/asr_fusion.gin.\n"
      f"LM_WEIGHTS = {weights!r}\nLENGTH_BONUSES = {bonuses!r}\n"
  )


def format_table(results: dict[str, Any]) -> str:
  lines = [f"{'language':<10}{'beam WER':>10}{'fused WER':>11}{'lambda':>8}{'beta':>7}"]
  for lang, v in results["best"].items():
    lines.append(
        f"{lang:<10}{v['plain']:>10.2f}{v['wer']:>11.2f}{v['lm_weight']:>8g}{v['length_bonus']:>7g}"
    )
  return "\n".join(lines)


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  parser = benchmark_common.new_parser("python -m tools.fusion_sweep", __doc__, "")
  add_run_arguments(parser, split="validation")
  parser.add_argument("--lm_weights", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5])
  parser.add_argument("--length_bonuses", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5])
  parser.add_argument("--beam_size", type=int, default=4)
  parser.add_argument("--json_out", default=None)
  parser.add_argument("--gin_out", default=None, help="the tuned tables as a gin file")
  args, bindings = benchmark_common.parse_known_args(parser, argv)
  if min(args.lm_weights) < 0:
    parser.error(f"--lm_weights {args.lm_weights}: lambda must be >= 0")
  if args.beam_size < 1:
    parser.error(f"--beam_size={args.beam_size} must be >= 1")
  return args, bindings


def main(argv: Optional[Sequence[str]] = None) -> int:
  def run(args, restored):
    results = sweep(restored, args.lm_weights, args.length_bonuses, args.beam_size)
    if args.gin_out:
      with open(args.gin_out, "w", encoding="utf-8") as f:
        f.write(gin_text(results["best"]))
      print(f"wrote {args.gin_out}", flush=True)
    return results

  return benchmark_common.run_main(
      argv, _parse, restore_from_args, run, format_table, packages=("jax",)
  )


if __name__ == "__main__":
  sys.exit(main())
