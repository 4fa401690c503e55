"""Builds Stylus's adapter catalog: LoRA adapters of one base model, each trained by podzoo on
different real data, saved alone with its card, and the index of their refined descriptions.

  python -m tools.build_adapter_catalog --base_dir BASE_MODEL_DIR --catalog_dir DIR \
      [--runs_dir DIR] [--steps 100] [--batch_size 8] [--rank 8] [--samples 4] \
      [--only NAME ...] [--json_out FILE]

The base is a decoder-only prefix LM in the 8320-token pre-training vocabulary, as
tools/flan_experiment.py trains it (its `<out_dir>/base`), or any run of
gin/models/decoder_only_tiny.gin + gin/mixtures/catalog_ul2.gin. For each adapter of
tools/adapter_catalog_tasks.py (Flan instruction tasks, one language's catalog text, Genesis,
spoken-form ASR LM text) the real command lines run in this process, in turn:
  1. `trainers.train` with gin/runs/lora.gin from the base checkpoint: --steps steps of
     --batch_size packed rows, rank --rank on the attention projections, into
     <runs_dir>/<name>;
  2. `trainers.infer` on the first --samples validation examples of the adapter's task;
  3. `trainers.export_adapter` into <catalog_dir>/<name>, with the author's description (some
     poor or empty on purpose) and those predictions as the card's sample outputs.
An adapter already in the catalog is kept, so a stopped build goes on where it stopped.
Then the refiner (trainers/stylus/refiner.py) describes every adapter of the catalog from its
card, and the base model's mean-pooled hidden states embed the descriptions into
<catalog_dir>/index.npz. Prints a table of the catalog (and writes it to --json_out).
"""

import argparse
import json
import os
import sys
from typing import Any, Callable, Optional, Sequence

import jax

from model_zoo.errors import MissingFileError, UserError
from tasks.pretraining import vocabulary
from tools import adapter_catalog_tasks as catalog_tasks
from tools import benchmark_common, flan_experiment
from trainers import adapters, export_adapter, infer
from trainers import train as train_lib
from trainers.stylus import catalog, refiner
from trainers.stylus.embedder import Embedder
from trainers.stylus.retriever import INDEX_FILE

LORA_GIN = "gin/runs/lora.gin"
EXPORT_GIN = "gin/runs/export_adapter.gin"
INFER_GIN = "gin/runs/infer.gin"
BASE_BINDINGS = (
    f"TransformerConfig.vocab_size = {vocabulary.MODEL_VOCAB_SIZE}",
    "DecoderOnlyModel.feature_converter = 'prefix_lm'",
)
_configured_model = benchmark_common.model_configurable("build_adapter_catalog")


def run_flags(adapter: catalog_tasks.Adapter, args: argparse.Namespace) -> list[str]:
  """The LoRA run's flags, which its train, infer and export command lines all take."""
  bindings = [
      *flan_experiment.common_bindings(args.steps),
      f"MIXTURE_OR_TASK_MODULE = '{catalog_tasks.__name__}'",
      f"MIXTURE_OR_TASK_NAME = '{adapter.task}'",
      f"TASK_FEATURE_LENGTHS = {dict(adapter.lengths)}",
      f"INITIAL_CHECKPOINT_PATH = '{args.base_dir}'",
      f"MODEL_DIR = '{os.path.join(args.runs_dir, adapter.name)}'",
      f"TRAIN_STEPS = {args.steps}",
      f"BATCH_SIZE = {args.batch_size}",
      f"EVAL_PERIOD = {args.steps}",
      "EVAL_STEPS = 1",
      f"CHECKPOINT_PERIOD = {args.steps}",
      f"LORA_RANK = {args.rank}",
      f"LORA_ALPHA = {2.0 * args.rank}",
  ]
  gin_files = (
      flan_experiment.MODEL_GIN,
      *flan_experiment.RUN_GINS,
      flan_experiment.PRETRAIN_GIN,
      LORA_GIN,
  )
  return [f"--gin_file={f}" for f in gin_files] + [
      f"--gin.{b.replace(' = ', '=', 1)}" for b in bindings
  ]


def _run(main: Callable[[Sequence[str]], int], flags: Sequence[str], what: str) -> None:
  print(f"== {what}: {' '.join(flags)}", flush=True)
  code = main(list(flags))
  jax.clear_caches()  # one process runs every command line: keep its compiled code bounded
  if code:
    raise UserError(f"{what} failed (exit {code}); its log is above.")


def build_adapter(adapter: catalog_tasks.Adapter, args: argparse.Namespace) -> None:
  """Trains, samples and exports one adapter into the catalog (module docstring)."""
  flags = run_flags(adapter, args)
  _run(train_lib.main, flags, f"train {adapter.name}")
  _run(
      infer.main,
      [*flags, f"--gin_file={INFER_GIN}", f"--gin.infer.max_examples={args.samples}"]
      + ["--gin.infer.overwrite=True"],
      f"infer {adapter.name}",
  )
  predictions = os.path.join(
      args.runs_dir, adapter.name, "inference", f"predict-{args.steps}.jsonl"
  )
  _run(
      export_adapter.main,
      [
          *flags,
          f"--gin_file={EXPORT_GIN}",
          f"--gin.ADAPTER_DIR={os.path.join(args.catalog_dir, adapter.name)!r}",
          f"--gin.ADAPTER_DESCRIPTION={adapter.description!r}",
          f"--gin.export_adapter.samples_file={predictions!r}",
          f"--gin.export_adapter.num_samples={args.samples}",
      ],
      f"export {adapter.name}",
  )


def load_base(base_dir: str) -> tuple[Any, Any]:
  """(model, parameters) of the base: its newest checkpoint, on one device."""
  model = benchmark_common.load_model(
      [flan_experiment.MODEL_GIN], "", BASE_BINDINGS, _configured_model, "build_adapter_catalog"
  )
  try:
    return model, benchmark_common.newest_params(model, base_dir)
  except MissingFileError:
    raise MissingFileError(
        f"--base_dir {base_dir} holds no checkpoint; give the MODEL_DIR of a trained base, "
        "e.g. <out_dir>/base of `python -m tools.flan_experiment`"
    ) from None


def base_embedder(base_dir: str) -> Embedder:
  """The base model's mean-pooled hidden states, which embed descriptions and prompts alike."""
  model, params = load_base(base_dir)
  return Embedder(model, params, vocabulary.pretraining_vocabulary().encode)


def build_index(catalog_dir: str, embedder: Embedder) -> dict[str, Any]:
  """Refines and embeds every adapter of the catalog into catalog_dir/index.npz; returns
  name -> its card and refined description (entries of another base are left out)."""
  entries, skipped = catalog.load_catalog(catalog_dir, embedder.params)
  cards = {name: entry.card for name, entry in entries.items()}
  describe = lambda card: refiner.refine(card, catalog_tasks.describe_task)
  index = refiner.build_index(cards, describe, embedder.embed, embedder.name)
  index.save(os.path.join(catalog_dir, INDEX_FILE))
  refined = dict(zip(index.names, index.descriptions))
  return {
      "index": os.path.join(catalog_dir, INDEX_FILE),
      "embedder": embedder.name,
      "adapters": {name: {"card": cards[name], "refined": refined[name]} for name in cards},
      "skipped": skipped,
  }


def format_table(summary: dict[str, Any]) -> str:
  rows = ["| adapter | task | author's description | refined description | eval xent |"]
  rows.append("|---|---|---|---|---|")
  for name, entry in sorted(summary["adapters"].items()):
    card = entry["card"]
    xent = card.get("eval_metrics", {}).get("cross_entropy")
    rows.append(
        f"| {name} | {card.get('task')} | {card.get('description') or '(none)'} | "
        f"{entry['refined']} | {'' if xent is None else f'{xent:.3f}'} |"
    )
  for name, why in sorted(summary["skipped"].items()):
    rows.append(f"| {name} | skipped: {why} | | | |")
  return "\n".join(rows)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m tools.build_adapter_catalog", description=__doc__.split("\n\n")[0]
  )
  parser.add_argument("--base_dir", required=True, help="the base run's MODEL_DIR")
  parser.add_argument("--catalog_dir", required=True)
  parser.add_argument("--runs_dir", help="the LoRA runs' MODEL_DIRs (default: <catalog_dir>_runs)")
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--rank", type=int, default=8)
  parser.add_argument("--samples", type=int, default=4, help="sample outputs per card")
  names = [a.name for a in catalog_tasks.ADAPTERS]
  parser.add_argument("--only", nargs="+", choices=names, help="these adapters (default: all)")
  parser.add_argument("--json_out")
  args = parser.parse_args(argv)
  args.base_dir, args.catalog_dir = map(os.path.abspath, (args.base_dir, args.catalog_dir))
  args.runs_dir = os.path.abspath(args.runs_dir or f"{args.catalog_dir}_runs")
  return args


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  try:
    embedder = base_embedder(args.base_dir)  # a missing base stops the build before training
    os.makedirs(args.catalog_dir, exist_ok=True)
    for adapter in catalog_tasks.ADAPTERS:
      if args.only and adapter.name not in args.only:
        continue
      if os.path.isdir(os.path.join(args.catalog_dir, adapter.name)):
        adapters.read_card(os.path.join(args.catalog_dir, adapter.name))
        print(f"== {adapter.name}: in the catalog already", flush=True)
        continue
      build_adapter(adapter, args)
    summary = build_index(args.catalog_dir, embedder)
  except UserError as e:
    print(f"ERROR: {e}", file=sys.stderr)
    return 1
  print(format_table(summary))
  if args.json_out:
    with open(args.json_out, "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=1, ensure_ascii=False)
  return 0


if __name__ == "__main__":
  sys.exit(main())
