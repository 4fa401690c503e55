"""Offline preprocessing on Apache Beam, as SeqIO's cache_tasks_main: the job that
`python -m trainers.cache_tasks` runs.

Each task of a mixture is preprocessed up to its `seqio.CacheDatasetPlaceholder` once, over
every split, and written as TFRecords (with SeqIO's info and stats) under
`<cache_dir>/<task's directory>`; a run whose `DatasetConfig.cache_dir` is that directory
reads them (SeqIO's `use_cached`) and runs only the steps after the placeholder. The job is
SeqIO's own pipeline (`seqio.scripts.cache_tasks_main.run_pipeline`) on the Beam runner
`pipeline_options` name: the DirectRunner on this machine, or Dataflow, Flink or Spark with
their options. A task is written whole or not at all (SeqIO writes its COMPLETED marker
last, and only a task with the marker counts as cached); a task already cached there is
kept unless `overwrite`.

What comes before the placeholder is run once, so it must be deterministic, or random
through SeqIO's seeds (`seqio.map_over_dataset(num_seeds=...)`): the cache job seeds each
task and source shard of its own, so a cached task holds one draw of it (e.g. one rendering
of each Flan prompt) for every epoch, where the uncached task draws again with each run's
seed. What must vary from epoch to epoch goes after the placeholder.
"""

import json
import re
import subprocess
import sys
from typing import Optional, Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio

from model_zoo.errors import UserError
from tasks import cached, pipeline


def _seqio_script_flags(min_shards: int, base_seed: Optional[int]):
  """SeqIO's script reads some settings from absl flags: parsed (defaults) and set here."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  from seqio.scripts import cache_tasks_main  # pylint: disable=import-outside-toplevel

  if not flags.FLAGS.is_parsed():
    flags.FLAGS(["cache_tasks"], known_only=True)
  flags.FLAGS.min_shards = min_shards
  flags.FLAGS.base_seed = base_seed
  return cache_tasks_main


def cache(
    mixture_or_task_name: str,
    cache_dir: str,
    *,
    module: Optional[str] = None,
    pipeline_options: Sequence[str] = ("--runner=DirectRunner",),
    min_shards: int = 1,
    base_seed: Optional[int] = None,
    overwrite: bool = False,
    tasks_per_job: int = 0,
) -> dict[str, str]:
  """Caches every task of `mixture_or_task_name` into `cache_dir`; returns each task's
  directory there. Tasks already cached there are kept unless `overwrite`, so a job cut
  short resumes where it stopped. `tasks_per_job` > 0 runs one Beam job per that many
  tasks: the DirectRunner holds a job's data in memory (54 MT tasks in one job needed over
  9 GB in a worker), a cluster runner does not need it (0: one job)."""
  provider = pipeline.get_task_or_mixture(mixture_or_task_name, module=module)
  tasks = pipeline.tasks_of(provider)
  cached.check_cacheable(mixture_or_task_name, tasks)
  try:
    import apache_beam as beam  # pylint: disable=import-outside-toplevel  (the [beam] extra)
  except ImportError as e:
    raise UserError(f"Caching tasks needs Apache Beam ({e}): pip install -e '.[beam]'.") from e

  script = _seqio_script_flags(min_shards, base_seed)
  seqio.add_global_cache_dirs([cache_dir])
  options = beam.options.pipeline_options.PipelineOptions(list(pipeline_options))
  modules = worker_modules(module)
  if not _runs_in_this_process(options):
    check_workers_register(mixture_or_task_name, [t.name for t in tasks], modules)
  for names in job_chunks([t.name for t in tasks], tasks_per_job):
    with beam.Pipeline(options=options) as job:
      script.run_pipeline(
          job,
          [re.escape(name) for name in names],
          cache_dir,
          modules_to_import=modules,
          overwrite=overwrite,
      )
  missing = [t.name for t in tasks if t.cache_dir is None]
  if missing:
    raise RuntimeError(f"The cache job finished but left {missing} without a COMPLETED marker.")
  return {t.name: t.cache_dir for t in tasks}


def job_chunks(names: Sequence[str], tasks_per_job: int) -> list[list[str]]:
  """The task names of each Beam job, in order: `tasks_per_job` a job (all when 0)."""
  if tasks_per_job < 0:
    raise cached.CacheError(f"cache_tasks.tasks_per_job={tasks_per_job} must be >= 0 (0: one job)")
  size = tasks_per_job or len(names)
  return [list(names[i : i + size]) for i in range(0, len(names), size)]


def worker_modules(module: Optional[str]) -> list[str]:
  """What each Beam worker imports so that the tasks are registered there too: the podzoo task
  modules this process imported (the gin files import the built-in ones), then the user's."""
  imported = [name for name in list(sys.modules) if name.split(".")[0] == "tasks"]
  return imported + ([module] if module else [])


def _runs_in_this_process(options) -> bool:
  """The DirectRunner runs the job in this process, where the tasks are registered, unless its
  running mode starts worker processes."""
  from apache_beam.options import pipeline_options  # pylint: disable=import-outside-toplevel

  runner = options.view_as(pipeline_options.StandardOptions).runner
  mode = options.view_as(pipeline_options.DirectOptions).direct_running_mode
  return runner in (None, "DirectRunner", "direct") and mode != "multi_processing"


def check_workers_register(name: str, task_names: Sequence[str], modules: Sequence[str]) -> None:
  """A CacheError naming the tasks that importing `modules` in a fresh process (as a Beam
  worker does) leaves unregistered: a worker would fail on them minutes into the job."""
  code = (
      "import importlib, json, sys; import seqio; "
      "[importlib.import_module(m) for m in sys.argv[2:]]; "
      "known = set(seqio.TaskRegistry.names()); "
      "print(json.dumps([t for t in json.loads(sys.argv[1]) if t not in known]))"
  )
  done = subprocess.run(
      [sys.executable, "-c", code, json.dumps(list(task_names)), *modules],
      capture_output=True,
      text=True,
      check=True,
  )
  missing = json.loads(done.stdout.strip().splitlines()[-1])
  if missing:
    raise cached.CacheError(
        f"{name!r}: the Beam workers would not know {len(missing)} of its tasks "
        f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}): importing "
        f"{list(modules)} does not register them, because something else (e.g. a function "
        "call) did in this process. Register them when a module is imported and pass it as "
        "MIXTURE_OR_TASK_MODULE, or run the DirectRunner in this process."
    )
