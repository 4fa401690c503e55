"""Builds the ASR speech data (espeak-ng speech of the ASR LM text) and summarises it.

  python -m tools.build_asr_speech --config default [--data_dir DIR] [--json_out FILE]

Configs (tasks/asr/speech_corpus.py): "tiny" (2 languages, seconds), "default" (4
languages, what gin/mixtures/asr.gin trains on), "full" (8 languages). The dataset goes to
DIR, by default `$PODZOO_CACHE/tfds`, where the asr_* tasks read it; a config already
built there is reused, not rebuilt. Prints utterances, hours and the longest utterance per
split and language, and the same as JSON (to FILE, or stdout). Needs Debian's espeak-ng
(apt-get install espeak-ng): without it, exits 2 saying so.
"""

import argparse
import collections
import os
import pathlib
import sys
import time
from typing import TYPE_CHECKING, Sequence

from model_zoo.errors import UserError
from tasks.asr import audio, speech_corpus
from tools import benchmark_common

if TYPE_CHECKING:
  import seqio

EXIT_NO_ESPEAK = 2


def summarize(source: "seqio.TfdsDataSource", config: "speech_corpus.SpeechConfig") -> dict:
  """split -> lang -> utterances, hours and the longest utterance (seconds) in `source`."""

  summary = {}
  for split in speech_corpus.SPLITS:
    seconds = collections.defaultdict(list)
    ds = source.get_dataset(split, shuffle=False).map(lambda ex: (ex["lang"], ex["num_samples"]))
    for lang, num_samples in ds.as_numpy_iterator():
      seconds[lang.decode()].append(num_samples / audio.SAMPLE_RATE)
    summary[split] = {
        lang: {
            "utterances": len(seconds[lang]),
            "hours": sum(seconds[lang]) / 3600,
            "longest_seconds": max(seconds[lang], default=0.0),
        }
        for lang in config.languages
    }
  return summary


def format_table(summary: dict) -> str:
  """The summary as rows of split, language, utterances, hours and longest utterance."""
  rows = [f"{'split':<11} {'lang':<4} {'utterances':>10} {'hours':>8} {'longest':>9}"]
  for split, langs in summary.items():
    for lang, row in langs.items():
      rows.append(
          f"{split:<11} {lang:<4} {row['utterances']:>10} {row['hours']:>8.3f} "
          f"{row['longest_seconds']:>7.1f} s"
      )
  every = [row for langs in summary.values() for row in langs.values()]
  total_hours = sum(r["hours"] for r in every)
  rows.append(
      f"{'all':<11} {'all':<4} {sum(r['utterances'] for r in every):>10} {total_hours:>8.3f}"
  )
  return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m tools.build_asr_speech", description=__doc__.splitlines()[0]
  )
  parser.add_argument("--config", default="default", help="tiny, default or full")
  parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: the cache's)")
  parser.add_argument("--json_out", default=None, help="write the summary here (default: stdout)")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  # Imported here: TensorFlow loads in seconds, --help should not wait.
  from tasks import cache
  from tasks.asr import speech_dataset, synthesis

  data_dir = args.data_dir or str(cache.cache_dir("tfds"))
  start = time.perf_counter()
  try:
    config = speech_corpus.get_config(args.config)
    source = speech_dataset.prepare(args.config, data_dir, progress=True)
  except synthesis.EspeakMissingError as e:
    benchmark_common.report_user_error(e)
    return EXIT_NO_ESPEAK
  except UserError as e:
    return benchmark_common.report_user_error(e)
  seconds = time.perf_counter() - start
  path = pathlib.Path(speech_dataset.dataset_dir(args.config, data_dir))
  summary = summarize(source, config)
  results = {
      "config": args.config,
      "tfds_name": speech_dataset.tfds_name(args.config),
      "data_dir": data_dir,
      "path": str(path),
      "bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file()),
      "seconds": seconds,
      "splits": summary,
  }
  table = format_table(summary)
  table += f"\n{results['bytes'] / 2**20:.1f} MiB in {path}, ready after {seconds:.1f} s"
  benchmark_common.emit(results, table, args.json_out)
  return 0


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  sys.exit(main())
