"""Builds the SPAE image data (digits named in several languages, rendered words) and
summarises it.

  python -m tools.build_spae_images --config digits [--data_dir DIR] [--json_out FILE]
      [--grid PNG]

Configs (tasks/spae/image_corpus.py): "tiny" (for tests, seconds), "digits" (what
gin/mixtures/spae_digits.gin trains on), "words" (gin/mixtures/spae_words.gin). The dataset
goes to DIR, by default `$PODZOO_CACHE/tfds`, where the spae_* tasks read it; a config
already built there is reused, not rebuilt. Prints examples, classes and the fewest and most
examples of a class per split, and the same as JSON (to FILE, or stdout); --grid writes a
PNG of train images (a class's first, then more) with their words (matplotlib: the [experiments] extra). Digits need
scikit-learn, words a TrueType font (apt-get install fonts-dejavu-core): without them, exits
1 saying so.
"""

import argparse
import collections
import os
import pathlib
import sys
import time
from typing import TYPE_CHECKING, Sequence

from model_zoo.errors import UserError
from tasks.spae import image_corpus
from tools import benchmark_common

if TYPE_CHECKING:
  import seqio

GRID_SIDE = 8  # images a row and rows in --grid


def summarize(source: "seqio.TfdsDataSource") -> dict:
  """split -> examples, classes, the fewest and most examples of a class, and examples per
  language in `source`."""
  summary = {}
  for split in image_corpus.SPLITS:
    ds = source.get_dataset(split, shuffle=False).map(lambda ex: (ex["label"], ex["lang"]))
    labels, langs = collections.Counter(), collections.Counter()
    for label, lang in ds.as_numpy_iterator():
      labels[int(label)] += 1
      langs[lang.decode()] += 1
    summary[split] = {
        "examples": sum(labels.values()),
        "classes": len(labels),
        "per_class_min": min(labels.values(), default=0),
        "per_class_max": max(labels.values(), default=0),
        "languages": dict(sorted(langs.items())),
    }
  return summary


def format_table(summary: dict) -> str:
  """The summary as rows of split, examples, classes, per-class extremes and languages."""
  rows = [f"{'split':<11} {'examples':>8} {'classes':>7} {'min/class':>9} {'max/class':>9}  langs"]
  for split, row in summary.items():
    rows.append(
        f"{split:<11} {row['examples']:>8} {row['classes']:>7} {row['per_class_min']:>9} "
        f"{row['per_class_max']:>9}  {','.join(row['languages'])}"
    )
  rows.append(f"{'all':<11} {sum(row['examples'] for row in summary.values()):>8}")
  return "\n".join(rows)


def write_grid(source: "seqio.TfdsDataSource", path: str) -> None:
  """GRID_SIDE**2 train images titled by word: each class's first in stored order (which
  mixes the classes), then the next ones."""
  import matplotlib  # pylint: disable=import-outside-toplevel  (the [experiments] extra)

  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  # The whole split (small): stopping a read early makes TensorFlow warn about its cache.
  examples = list(source.get_dataset("train", shuffle=False).as_numpy_iterator())
  firsts = {}
  for index, ex in enumerate(examples):
    firsts.setdefault(int(ex["label"]), index)
  chosen = sorted(firsts.values())[: GRID_SIDE**2]
  chosen += [i for i in range(len(examples)) if i not in set(chosen)][: GRID_SIDE**2 - len(chosen)]
  figure, axes = pyplot.subplots(GRID_SIDE, GRID_SIDE, figsize=(1.3 * GRID_SIDE, 1.45 * GRID_SIDE))
  for ax in axes.flat:
    ax.axis("off")
  for ax, index in zip(axes.flat, chosen):
    ex = examples[index]
    ax.imshow(ex["image"], interpolation="nearest")
    ax.set_title(f"{ex['word'].decode()} ({ex['lang'].decode()})", fontsize=8)
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path, dpi=100)
  pyplot.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m tools.build_spae_images", description=__doc__.splitlines()[0]
  )
  parser.add_argument("--config", default="digits", help="tiny, digits or words")
  parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: the cache's)")
  parser.add_argument("--json_out", default=None, help="write the summary here (default: stdout)")
  parser.add_argument("--grid", default=None, help="write a PNG of sample images here")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  # Imported here: TensorFlow loads in seconds, --help should not wait.
  from tasks import cache
  from tasks.spae import image_dataset

  data_dir = args.data_dir or str(cache.cache_dir("tfds"))
  start = time.perf_counter()
  try:
    source = image_dataset.prepare(args.config, data_dir, progress=True)
  except UserError as e:
    return benchmark_common.report_user_error(e)
  seconds = time.perf_counter() - start
  path = pathlib.Path(image_dataset.dataset_dir(args.config, data_dir))
  summary = summarize(source)
  results = {
      "config": args.config,
      "tfds_name": image_dataset.tfds_name(args.config),
      "data_dir": data_dir,
      "path": str(path),
      "bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file()),
      "seconds": seconds,
      "splits": summary,
  }
  table = format_table(summary)
  table += f"\n{results['bytes'] / 2**20:.1f} MiB in {path}, ready after {seconds:.1f} s"
  if args.grid:
    write_grid(source, args.grid)
    results["grid"] = args.grid
    table += f"\nwrote {args.grid}"
  benchmark_common.emit(results, table, args.json_out)
  return 0


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  sys.exit(main())
