"""Offline caching on Apache Beam (tasks/cache_job.py, tasks/cached.py): a cached task reads
the same examples as on the fly (a shipped task and a user's), a cached read is reproducible
for a seed, a task that cannot be cached or a cache without the task is named; and a run's
flags cache its data and train from it (trainers.cache_tasks, slow)."""

import collections
import importlib.util

import pytest
import seqio
import tensorflow as tf

from tasks import cache_job, cached, pipeline, quickstart
from tasks.controlled import rollouts

USER_TASK = "test_cache_user_task"
NEEDS_BEAM = pytest.mark.skipif(
    importlib.util.find_spec("apache_beam") is None,
    reason="Apache Beam is not installed: pip install -e '.[beam]' in an environment of its own",
)


def _register_user_task(
    case=tf.strings.upper, replace: bool = False, name: str = USER_TASK
) -> None:
  """A user's task: lines of the quickstart text, upper-cased (a deterministic step before
  the placeholder; `case`), tokenized, then EOS after it."""
  if name in seqio.TaskRegistry.names():
    if not replace:
      return
    seqio.TaskRegistry.remove(name)

  def dataset_fn(split, shuffle_files, seed=None):
    del shuffle_files, seed
    lines = quickstart.split_lines(split)[:300]
    return tf.data.Dataset.from_tensor_slices({"targets": lines})

  seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(dataset_fn, splits=("train", "validation")),
      preprocessors=[
          seqio.map_over_dataset(lambda ex: {"targets": case(ex["targets"])}),
          seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(),
          seqio.preprocessors.append_eos_after_trim,
      ],
      output_features={"targets": seqio.Feature(quickstart.quickstart_vocabulary())},
      metric_fns=[],
  )


def examples(task_name, split, use_cached, shuffle=False, seed=None):
  ds = seqio.get_mixture_or_task(task_name).get_dataset(
      sequence_length=None,
      split=split,
      use_cached=use_cached,
      shuffle=shuffle,
      seed=seed,
      num_epochs=1,
  )
  return [tuple(ex["targets"].tolist()) for ex in ds.as_numpy_iterator()]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  """Both tasks cached by the Beam job (the DirectRunner), 3 files a split."""
  _register_user_task()
  directory = str(tmp_path_factory.mktemp("cache"))
  for name in (quickstart.TASK_NAME, USER_TASK):
    written = cache_job.cache(name, directory, min_shards=3)
    assert list(written) == [name] and written[name].startswith(directory)
  return directory


def test_jobs_take_tasks_per_job_tasks_in_order_or_all_at_once():
  names = ["a", "b", "c", "d", "e"]
  assert cache_job.job_chunks(names, 2) == [["a", "b"], ["c", "d"], ["e"]]
  assert cache_job.job_chunks(names, 0) == [names]
  with pytest.raises(cached.CacheError, match="tasks_per_job=-1 must be >= 0"):
    cache_job.job_chunks(names, -1)


@pytest.mark.slow
def test_beam_workers_import_what_registers_the_tasks_and_others_are_named_first():
  """A worker process imports worker_modules(): a shipped task's module registers it there; a
  task that a function call registered in this process is named before the job starts."""
  _register_user_task()
  modules = cache_job.worker_modules("json")
  assert "tasks.quickstart" in modules and modules[-1] == "json"
  with pytest.raises(cached.CacheError, match=rf"would not know 1 of its tasks \({USER_TASK}\)"):
    cache_job.check_workers_register("mix", [quickstart.TASK_NAME, USER_TASK], modules)


@NEEDS_BEAM
@pytest.mark.parametrize("task_name", [quickstart.TASK_NAME, USER_TASK])
def test_a_cached_task_reads_the_examples_it_reads_on_the_fly(cache_dir, task_name):
  for split in ("train", "validation"):
    on_the_fly = examples(task_name, split, use_cached=False)
    from_cache = examples(task_name, split, use_cached=True)
    assert len(on_the_fly) > 50
    assert collections.Counter(from_cache) == collections.Counter(on_the_fly)


@NEEDS_BEAM
def test_a_cached_read_is_the_same_for_a_seed_and_shuffled(cache_dir):
  first = examples(quickstart.TASK_NAME, "train", use_cached=True, shuffle=True, seed=7)
  again = examples(quickstart.TASK_NAME, "train", use_cached=True, shuffle=True, seed=7)
  other = examples(quickstart.TASK_NAME, "train", use_cached=True, shuffle=True, seed=8)
  assert first == again and first != other
  assert collections.Counter(first) == collections.Counter(
      examples(quickstart.TASK_NAME, "train", use_cached=False)
  )


@NEEDS_BEAM
def test_batches_from_a_cache_hold_the_tasks_tokens(cache_dir):
  """The pipeline's batches (the decoder converter's rows, one per batch: none dropped as a
  remainder) from the cache carry the same tokens as on the fly."""
  kwargs = dict(shuffle=False, num_epochs=1, pack=False)
  lengths = {"targets": 64}
  got = pipeline.get_batches(
      quickstart.TASK_NAME, lengths, "validation", 1, cache_dir=cache_dir, **kwargs
  )
  want = pipeline.get_batches(quickstart.TASK_NAME, lengths, "validation", 1, **kwargs)
  rows = lambda batches: collections.Counter(
      tuple(row[row > 0].tolist()) for b in batches for row in b["decoder_target_tokens"]
  )
  assert rows(got) == rows(want) and sum(rows(want).values()) > 8


def test_a_task_without_a_placeholder_is_named_with_why(tmp_path):
  rollout_file = tmp_path / "rollouts.jsonl"
  rollout_file.write_text('{"input": "a", "output": "b", "num_tokens": 2, "rewards": {"x": 1}}\n')
  rollouts.register_rollout_task(
      "test_cache_rollouts", str(rollout_file), "x", quickstart.quickstart_vocabulary()
  )
  with pytest.raises(
      cached.CacheError,
      match="test_cache_rollouts: its preprocessors have no " "seqio.CacheDatasetPlaceholder",
  ):
    cache_job.cache("test_cache_rollouts", str(tmp_path / "cache"))
  assert not (tmp_path / "cache").exists()


def test_a_run_reading_a_cache_without_its_task_is_told_how_to_make_it(tmp_path):
  _register_user_task(name="test_cache_never_cached")
  with pytest.raises(cached.CacheError, match="does not hold 1 of the 1 tasks") as e:
    pipeline.get_batches(
        "test_cache_never_cached", {"targets": 32}, "train", 8, cache_dir=str(tmp_path)
    )
  assert "python -m trainers.cache_tasks" in str(e.value)


@NEEDS_BEAM
def test_what_comes_before_the_placeholder_is_read_from_the_cache(cache_dir):
  """The task re-registered with lower-casing: on the fly it lower-cases, from the cache its
  examples are still the upper-cased ones the job wrote."""
  vocab = quickstart.quickstart_vocabulary()
  try:
    _register_user_task(tf.strings.lower, replace=True)
    texts = lambda cached_: {
        vocab.decode(list(ids)) for ids in examples(USER_TASK, "validation", cached_)
    }
    lower, upper = texts(False), texts(True)
    assert any(t != t.upper() for t in lower) and all(t == t.upper() for t in upper)
    assert {t.lower() for t in upper} == {t.lower() for t in lower}
  finally:
    _register_user_task(replace=True)
