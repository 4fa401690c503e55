"""tools/benchmark_cache: the runs' flags (the cache only where asked), its table, its checks."""

import argparse

import pytest

from tools import benchmark_cache


def args(**overrides):
  settings = dict(min_messages=5000, steps=40, batch_size=32, repeats=3, workers=2, tasks_per_job=6)
  return argparse.Namespace(**{**settings, **overrides})


def test_only_the_cached_runs_flags_name_the_cache():
  plain = benchmark_cache.run_flags(args(), "/tmp/run", None)
  cached = benchmark_cache.run_flags(args(), "/tmp/run", "/tmp/cache")
  assert [f for f in cached if f not in plain] == ["--gin.DatasetConfig.cache_dir='/tmp/cache'"]
  assert "--gin.train.log_period=20" in plain and "--gin.mt_mixture.min_messages=5000" in plain


def test_table_holds_each_modes_medians():
  mode = lambda first, rate, wait: {
      "first_batch_s": first,
      "batches_per_s": rate,
      "input_wait_fraction": wait,
      "step_time_s": 0.25,
  }
  results = {
      "settings": vars(args()),
      "cache_job_s": 95.4,
      "tasks": 54,
      "modes": {"on the fly": mode(27.3, 4.0, 0.12), "cached": mode(6.1, 30.0, 0.004)},
  }
  table = benchmark_cache.format_table(results)
  assert "54 tasks" in table and "cache job 95 s (2 workers, 6 tasks a job)" in table
  assert "on the fly | 27.3 | 4.0 | 12.0% | 0.250" in table
  assert "cached | 6.1 | 30.0 | 0.4% | 0.250" in table


def test_odd_steps_are_refused(capsys):
  with pytest.raises(SystemExit) as e:
    benchmark_cache.main(["--steps=41"])
  assert e.value.code == 2 and "must be even" in capsys.readouterr().err


def test_workers_run_in_processes_of_their_own_but_one_runs_in_this_one():
  assert benchmark_cache.pipeline_options(1) == ["--runner=DirectRunner"]
  assert "--direct_num_workers=3" in benchmark_cache.pipeline_options(3)
  assert "--direct_running_mode=multi_processing" in benchmark_cache.pipeline_options(3)
