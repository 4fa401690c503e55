"""Which tasks SeqIO can cache offline, and whether a cache directory holds them: checked
before a cache job (trainers.cache_tasks) and before a run reads a cache
(DatasetConfig.cache_dir), so either names the task and the fix instead of SeqIO falling
back to on-the-fly preprocessing with a log line, or failing on an assert."""

from typing import Optional, Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio

from model_zoo.errors import ConfigError

NO_PLACEHOLDER = (
    "its preprocessors have no seqio.CacheDatasetPlaceholder, so nothing marks which steps "
    "may run offline. Add one after its deterministic steps (e.g. tokenizing) and before "
    "its random ones"
)


class CacheError(ConfigError):
  """A task that cannot be cached, or a cache directory that does not hold it."""


def uncacheable_reason(task: seqio.Task) -> Optional[str]:
  """Why SeqIO cannot cache `task`, or None when it can."""
  return None if task.supports_caching else NO_PLACEHOLDER


def check_cacheable(name: str, tasks: Sequence[seqio.Task]) -> None:
  """A CacheError naming each of `tasks` (those of `name`) that cannot be cached, and why."""
  blocked = {t.name: why for t in tasks if (why := uncacheable_reason(t))}
  if blocked:
    listed = "; ".join(f"{task}: {why}" for task, why in sorted(blocked.items()))
    raise CacheError(
        f"{name!r} cannot be cached: {len(blocked)} of its tasks cannot ({listed}). Leave "
        "DatasetConfig.cache_dir unset to preprocess on the fly."
    )


def check_cached(name: str, tasks: Sequence[seqio.Task], cache_dir: str) -> None:
  """Makes `cache_dir` one SeqIO searches; a CacheError unless it (or another cache SeqIO
  searches) holds every one of `tasks`, completely written."""
  check_cacheable(name, tasks)
  seqio.add_global_cache_dirs([cache_dir])
  missing = [t.name for t in tasks if t.cache_dir is None]
  if missing:
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    raise CacheError(
        f"DatasetConfig.cache_dir={cache_dir!r} does not hold {len(missing)} of the "
        f"{len(tasks)} tasks of {name!r} ({shown}). Cache them with "
        "`python -m trainers.cache_tasks` and this run's flags, or unset "
        "DatasetConfig.cache_dir to preprocess on the fly."
    )
