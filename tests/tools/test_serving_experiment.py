"""tools/serving_experiment and tools/serving_real_experiment: the cluster profiles follow
the stated cost model, AlpaServe's search never does worse than replication (it includes
it), the table and plot carry the results; the real experiment runs end to end (slow)."""

import argparse
import json
import os
import subprocess
import sys

import pytest

from tools import serving_experiment as se
from trainers.serving.profiles import ParallelConfig


def test_cluster_profiles_follow_the_cost_model():
  profile = se.cluster_profile("m", max_devices=4)
  assert profile.on(ParallelConfig(1, 1)).latency(1) == (1.0,)
  assert profile.on(ParallelConfig(2, 1)).latency(1) == pytest.approx((0.52, 0.52))
  assert profile.on(ParallelConfig(1, 2)).latency(1) == pytest.approx((0.55,))
  assert profile.on(ParallelConfig(2, 2)).latency(1) == pytest.approx((0.295, 0.295))
  one = profile.on(ParallelConfig(1, 1)).memory_per_device
  assert one == int(0.6 * se.DEVICE_MEMORY)
  assert profile.on(ParallelConfig(4, 1)).memory_per_device == one // 4
  assert ParallelConfig(8, 1) not in profile.configs


def small_args(**kw):
  return argparse.Namespace(
      **{"devices": 4, "models": 4, "max_group": 4, "requests": 400, "seed": 0, **kw}
  )


def test_alpaserve_never_does_worse_than_replication_and_wins_on_bursts():
  result = se.point(small_args(), rate=0.5, cv=4.0, slo_scale=5.0)
  assert result["alpaserve"]["attainment"] >= result["replication"]["attainment"]
  assert result["alpaserve"]["attainment"] > result["replication"]["attainment"] + 0.05
  assert result["replication"]["placement"] == ["1x1"]
  # Replication fits one 0.6-device model per device: four replicas on four devices.
  assert result["replication"]["replicas"] == 4


def test_the_table_and_plot_carry_the_results(tmp_path):
  point = lambda a, b: {
      "replication": {"attainment": a},
      "alpaserve": {"attainment": b, "placement": ["2x1"], "groups": 2},
  }
  results = {
      "settings": {"devices": 4, "models": 4},
      "sweeps": {
          name: [{name: v, **point(0.5, 0.75)} for v in values[:2]]
          for name, values in se.SWEEPS.items()
      },
      "simulator": {
          "simulations": 300,
          "seconds": 3.0,
          "placements_per_s": 100.0,
          "requests_per_s": 4e5,
      },
  }
  table = se.format_table(results)
  assert "cv | 1 | 0.500 | 0.750 | 2x1 x2" in table
  assert "300 placements scored in 3 s (100/s, 0.40M requests/s)" in table
  se.plot(results, str(tmp_path / "p.png"))
  assert (tmp_path / "p.png").stat().st_size > 10_000


@pytest.mark.slow
def test_the_real_experiment_serves_both_placements_and_loses_nothing(tmp_path):
  out = tmp_path / "real.json"
  done = subprocess.run(
      [
          sys.executable,
          "-m",
          "tools.serving_real_experiment",
          "--models",
          "2",
          "--seconds",
          "4",
          "--rate",
          "0.05",
          "--length",
          "32",
          "--json_out",
          str(out),
          "--plot",
          str(tmp_path / "r.png"),
      ],
      capture_output=True,
      text=True,
      env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
  )
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads(out.read_text())
  for method in ("replication", "alpaserve"):
    m = results["methods"][method]
    assert 0.0 <= m["predicted"] <= 1.0 and m["measured"]["lost"] == 0
    assert m["measured"]["sent"] == results["requests"]
  assert "1x1" in results["methods"]["replication"]["placement"]
