"""tools/benchmark_resume: prepared checkpoints at the data position, both resume modes run
for real (the replay one replays), and the JSON and table."""

import json

import pytest

from tests.trainers.test_cli import data_position, saved_state
from tools import benchmark_resume

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.slow  # six real train runs, ~2 minutes
def test_both_modes_resume_from_the_prepared_position(tmp_path, capsys):
  out, work = tmp_path / "resume.json", tmp_path / "new" / "work"  # made by the tool
  code = benchmark_resume.main(
      ["--steps", "3,1", "--repeats", "1", "--work_dir", str(work), "--json_out", str(out)]
  )
  printed = capsys.readouterr().out
  assert code == 0, printed
  for steps in (1, 3):
    prepared = work / f"prepared_{steps}"
    assert int(saved_state(prepared, steps)["step"]) == steps
    assert data_position(prepared, steps) == {"train_batches": steps}
    assert (prepared / "checkpoints" / str(steps) / "data_iterator").is_dir()
    for mode in benchmark_resume.MODES:
      log = (work / f"run_{steps}_{mode}.log").read_text()
      assert f"Restored checkpoint at step {steps}" in log
      assert (f"Replaying {steps} batches" in log) == (mode == "replay"), log
      assert data_position(work / f"run_{steps}_{mode}", steps + 1) == {"train_batches": steps + 1}
  results = json.loads(out.read_text())
  rows = {(r["steps"], r["mode"]): r for r in results["rows"]}
  assert sorted(rows) == [(1, "replay"), (1, "restore"), (3, "replay"), (3, "restore")]
  for row in rows.values():
    assert 0 < row["data_s"] < row["resume_s"] and len(row["samples"]) == 1
  for mode in benchmark_resume.MODES:
    assert results["ratios"][mode] == pytest.approx(
        rows[3, mode]["data_s"] / rows[1, mode]["data_s"]
    )
    assert f"most/fewest steps: {mode} x{results['ratios'][mode]:.2f}" in printed


def test_bad_flags_are_refused_by_the_parser(capsys):
  for argv in (["--steps", "0,10"], ["--repeats", "0"], ["--stepz", "3"]):
    with pytest.raises(SystemExit) as exit_info:
      benchmark_resume.parse_args(argv)
    assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "positive step counts" in err and "at least 1" in err and "--stepz" in err
