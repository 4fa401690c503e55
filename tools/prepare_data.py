"""Builds every derived data set podzoo's tasks read, into the cache ($PODZOO_CACHE).

  python -m tools.prepare_data [--only parallel_tfds,langid] [--json_out FILE]

Tasks build what they need on first use, so this is never required; it is how to build
it all ahead of a run (e.g. once, on a shared cache, before a multi-host job starts) and
see where each piece lives. Each step is deterministic and cached by content: running it
again reuses what is there.

| step | what | built by |
|---|---|---|
| quickstart_vocab | 1024-piece SentencePiece on Genesis (train split) | tasks/quickstart.py |
| ul2_vocab | the same + UL2 mode tokens and 100 sentinels | tasks/ul2/vocabulary.py |
| asr_lm_vocab | 2048 pieces on spoken-form text in 8 languages | tasks/asr_lm/tasks.py |
| parallel_tfds | TFDS dataset of the catalog corpus (every language with >= 1,000 messages) | tasks/parallel/tfds_dataset.py |
| parallel_vocab | 8192 pieces, <2xx> tags and [MASK] | tasks/parallel/vocabulary.py |
| langid | the n-gram LangID model's parameters | tasks/langid/train.py |
"""

import argparse
import os
import pathlib
import sys
import time
from typing import Callable, Sequence

from model_zoo.errors import ConfigError, UserError
from tasks import cache
from tools import benchmark_common


def _quickstart_vocab() -> str:
  from tasks import quickstart

  return quickstart.quickstart_vocabulary().sentencepiece_model_file


def _ul2_vocab() -> str:
  from tasks.ul2 import vocabulary

  return vocabulary.ul2_vocabulary().sentencepiece_model_file


def _asr_lm_vocab() -> str:
  from tasks.asr_lm import tasks

  return tasks.vocabulary().sentencepiece_model_file


def _parallel_tfds() -> str:
  from tasks.parallel import tfds_dataset

  source = tfds_dataset.prepare()
  return str(
      pathlib.Path(source.tfds_dataset.data_dir, *tfds_dataset.tfds_name().split(":")[0].split("/"))
  )


def _parallel_vocab() -> str:
  from tasks.parallel import vocabulary

  return vocabulary.parallel_vocabulary().sentencepiece_model_file


def _langid() -> str:
  from tasks.langid import model, train

  train.load_or_train()
  return str(train.cache_path(model.LangIdConfig()))


# Imports stay inside the steps: each pulls in only what it needs.
STEPS: dict[str, Callable[[], str]] = {
    "quickstart_vocab": _quickstart_vocab,
    "ul2_vocab": _ul2_vocab,
    "asr_lm_vocab": _asr_lm_vocab,
    "parallel_tfds": _parallel_tfds,
    "parallel_vocab": _parallel_vocab,
    "langid": _langid,
}


def _size(path: str) -> int:
  path = pathlib.Path(path)
  if path.is_dir():
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
  return path.stat().st_size


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m tools.prepare_data", description=__doc__.splitlines()[0]
  )
  parser.add_argument("--only", default=",".join(STEPS), help=f"comma-separated of {list(STEPS)}")
  parser.add_argument("--json_out", default=None, help="write the results here (default: stdout)")
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  steps = [s.strip() for s in args.only.split(",") if s.strip()]
  unknown = [s for s in steps if s not in STEPS]
  if unknown or not steps:
    return benchmark_common.report_user_error(
        ConfigError(f"--only: unknown steps {unknown}; choose from {list(STEPS)}")
    )
  results = {"cache": str(cache.cache_dir("")), "steps": {}}
  rows = []
  for step in steps:
    start = time.perf_counter()
    try:
      path = STEPS[step]()
    except (OSError, UserError) as e:  # anything else is a bug: its traceback shows
      return benchmark_common.report_user_error(ConfigError(f"step {step}: {e}"))
    seconds = time.perf_counter() - start
    results["steps"][step] = {"path": path, "bytes": _size(path), "seconds": seconds}
    rows.append(f"{step:>16}  {seconds:7.1f} s  {_size(path) / 2**20:8.2f} MiB  {path}")
  table = "\n".join([f"{'step':>16}  {'time':>9}  {'size':>12}  path", *rows])
  benchmark_common.emit(results, table, args.json_out)
  return 0


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  sys.exit(main())
