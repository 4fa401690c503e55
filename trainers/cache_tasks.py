"""`python -m trainers.cache_tasks <a run's flags>`: preprocesses the run's tasks offline on
Apache Beam into DatasetConfig.cache_dir, which the run, given the same flags, then reads.

  python -m trainers.cache_tasks --gin_file=gin/runs/quickstart.gin \
      --gin.MODEL_DIR="'/tmp/podzoo_quickstart'" \
      --gin.DatasetConfig.cache_dir="'/tmp/podzoo_cache'"

The tasks are those of the run's training data (train/DatasetConfig: MIXTURE_OR_TASK_NAME,
MIXTURE_OR_TASK_MODULE); every split of each is cached, each task up to its
seqio.CacheDatasetPlaceholder (tasks/cache_job.py says what that means for random
preprocessing). `cache_tasks.pipeline_options` choose the Beam runner and its options
(default: the DirectRunner, in this process), e.g.
--gin.cache_tasks.pipeline_options="['--runner=DataflowRunner', '--project=...']" (workers
in processes of their own import MIXTURE_OR_TASK_MODULE and the podzoo task modules to find
the tasks; a task they would not find is named before the job starts).
`cache_tasks.min_shards` sets the files per split (more lets a run spread them over its
processes), `cache_tasks.overwrite` rewrites tasks already cached there (the others are kept,
so a job cut short resumes), and `cache_tasks.tasks_per_job` runs a Beam job per that many
tasks (the DirectRunner holds a job's data in memory).
"""

from typing import Optional, Sequence

import gin

from model_zoo.errors import ConfigError
from trainers import cli
from trainers import train  # noqa: F401  (registers train(), which the run configs bind)
from trainers.dataset_config import DatasetConfig


@gin.configurable
def cache_tasks(
    dataset_cfg: DatasetConfig = gin.REQUIRED,
    pipeline_options: Sequence[str] = ("--runner=DirectRunner",),
    min_shards: int = 1,
    base_seed: Optional[int] = None,
    overwrite: bool = False,
    tasks_per_job: int = 0,
) -> dict[str, str]:
  """Caches `dataset_cfg`'s tasks into its cache_dir; returns each task's directory there."""
  if not dataset_cfg.cache_dir:
    raise ConfigError(
        "Set DatasetConfig.cache_dir to the directory to write the cache to, e.g. "
        "--gin.DatasetConfig.cache_dir=\"'/tmp/podzoo_cache'\"; give the run the same flag."
    )
  if min_shards < 1:
    raise ConfigError(f"cache_tasks.min_shards={min_shards} must be at least 1.")
  from trainers import data  # pylint: disable=g-import-not-at-top  (SeqIO, Beam: when it runs)

  written = data.cache_tasks(
      dataset_cfg,
      pipeline_options=pipeline_options,
      min_shards=min_shards,
      base_seed=base_seed,
      overwrite=overwrite,
      tasks_per_job=tasks_per_job,
  )
  cli.say(
      f"Cached {len(written)} task(s) of {dataset_cfg.mixture_or_task_name!r} in "
      f"{dataset_cfg.cache_dir}:\n"
      + "\n".join(f"  {t}: {d}" for t, d in sorted(written.items()))
      + "\nTrain with the same flags (DatasetConfig.cache_dir included) to read them."
  )
  return written


def _cache_the_runs_training_data() -> None:
  """Binds cache_tasks.dataset_cfg to the run's training data, unless the flags bound it."""
  try:
    gin.query_parameter("cache_tasks.dataset_cfg")
  except ValueError:
    with gin.unlock_config():
      gin.parse_config("cache_tasks.dataset_cfg = @train/DatasetConfig()")
  cache_tasks()


main, console_main = cli.entry_point(_cache_the_runs_training_data, "cache_tasks")

if __name__ == "__main__":
  console_main()
