"""tools/serving_plan: `place` prints a placement that serve.placement reads, with its
simulated attainment beside replication's; `profile` measures a trained run (slow); bad
flags are named."""

import pytest

from tests.trainers.serving.helpers import profile
from tests.trainers.test_cli import quick_flags, run_cli
from tools import serving_plan
from trainers.serving import profiles, runs


def place(tmp_path, *flags: str) -> int:
  """`place` over profiles of two models ("a", "b": 1 s a request, 1 GiB) on 2 devices."""
  path = tmp_path / "profiles.jsonl"
  profiles.save([profile("a"), profile("b")], path)
  return serving_plan.main(["place", "--profiles", str(path), "--devices", "2", *flags])


def test_place_prints_a_placement_serve_reads_and_beats_replication_on_bursts(tmp_path, capsys):
  code = place(
      tmp_path, "--device_memory_gb=1.5", "--rate=a=0.4", "--rate=b=0.4", "--cv=4", "--seconds=2000"
  )
  out = capsys.readouterr().out
  assert code == 0, out
  text = out.split("placement: '")[1].split("'")[0]
  assert str(runs.parse_placement(text, ["a", "b"])) in ("2x1[a,b]", "2x1[b,a]")
  figures = out.split("attainment: ")[1].split(";")[0]  # "0.722 (replication alone: 0.570"
  ours, replication = float(figures.split()[0]), float(figures.split(": ")[1])
  assert ours > replication


def test_a_missing_rate_or_bad_shape_is_named(tmp_path, capsys):
  assert place(tmp_path, "--device_memory_gb=1", "--rate=a=1") == 1
  assert "missing ['b']" in capsys.readouterr().err
  with pytest.raises(Exception, match="not a shape STAGESxTENSOR"):
    serving_plan.parse_shape("2by1")


@pytest.mark.slow
def test_profile_measures_a_trained_run_on_each_shape(tmp_path, capfd):
  code, out = run_cli(capfd, *quick_flags(tmp_path / "run", 2))
  assert code == 0, out
  path = tmp_path / "p.jsonl"
  code = serving_plan.main(
      [
          "profile",
          "--run",
          f"lm={tmp_path / 'run'}",
          "--shapes",
          "1x1,2x1",
          "--batch_sizes",
          "1,2",
          "--length",
          "16",
          "--out",
          str(path),
      ]
  )
  assert code == 0, capfd.readouterr()
  measured = profiles.load(path)["lm"]
  assert sorted(map(str, measured.configs)) == ["1x1", "2x1"]
  one, two = (measured.configs[c] for c in sorted(measured.configs))
  assert sorted(one.stage_latency_s) == sorted(two.stage_latency_s) == [1, 2]
  assert two.memory_per_device < one.memory_per_device and len(two.latency(1)) == 2
