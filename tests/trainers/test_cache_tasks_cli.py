"""`python -m trainers.cache_tasks` with a run's flags: it caches the run's training data on
Apache Beam, the run trains from the cache given the same flags, and mistakes are named."""

import os
import subprocess
import sys

import pytest
import seqio

from tests.tasks.test_cache_job import NEEDS_BEAM
from tests.trainers.test_cli import quick_flags, run_cli
from trainers import cache_tasks

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_without_a_cache_dir_it_says_which_setting_to_give(tmp_path, capfd):
  code = cache_tasks.main(quick_flags(tmp_path / "run", 2))
  assert code == 1 and "Set DatasetConfig.cache_dir" in capfd.readouterr().err


def test_help_names_the_settings(capfd):
  assert cache_tasks.main(["--help"]) == 0
  assert "cache_tasks.pipeline_options" in capfd.readouterr().out


@NEEDS_BEAM
@pytest.mark.slow
def test_a_runs_flags_cache_its_data_and_the_run_trains_from_it(tmp_path, capfd):
  from tasks import quickstart

  cache = tmp_path / "cache"
  flags = quick_flags(tmp_path / "run", 2, f"--gin.DatasetConfig.cache_dir='{cache}'")
  # Before the cache is written (in a process of its own: SeqIO's cache directories are
  # global to a process, and another test's may hold the task).
  done = subprocess.run(
      [sys.executable, "-m", "trainers.train", *flags], capture_output=True, text=True
  )
  assert done.returncode == 1 and "does not hold 1 of the 1 tasks" in done.stderr, done.stderr
  # As a user runs it: its own process, which has imported nothing the run configs bind; Beam
  # worker processes of their own, which must register the task too.
  workers = (
      "['--runner=DirectRunner','--direct_num_workers=2','--direct_running_mode=multi_processing']"
  )
  done = subprocess.run(
      [
          sys.executable,
          "-m",
          "trainers.cache_tasks",
          *flags,
          f"--gin.cache_tasks.pipeline_options={workers}",
      ],
      capture_output=True,
      text=True,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"Cached 1 task(s) of '{quickstart.TASK_NAME}'" in done.stdout, done.stdout
  task_dir = cache / seqio.get_task_dir_from_name(quickstart.TASK_NAME)
  assert (task_dir / "COMPLETED").exists()
  written = {n.split(".")[0] for n in os.listdir(task_dir) if ".tfrecord-" in n}
  assert written == {"train", "validation"}
  code, out = run_cli(capfd, *flags)
  assert code == 0 and "step 2" in out, out
