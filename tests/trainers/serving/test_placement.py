"""Placement search: memory budgets hold, a model that fits nowhere is named, and on bursty
arrivals of two models model parallelism beats replication (AlpaServe's Figure 1 case)."""

import pytest

from model_zoo.errors import ConfigError
from tests.trainers.serving.helpers import GIB, ONE, TWO_STAGES, profile
from trainers.serving import placement, workload
from trainers.serving.profiles import ParallelConfig
from trainers.serving.simulator import Group

# Two models, two devices, a device holds one model's weights (1 GiB) but not two.
PROFILES = {"A": profile("A"), "B": profile("B")}
DEVICE_MEMORY = int(1.5 * GIB)


def bursty(cv=4.0, rate=0.4, seconds=4000.0, seed=1):
  processes = {name: workload.GammaProcess(rate, cv) for name in PROFILES}
  return workload.gamma_trace(processes, seconds, seed=seed)


def test_model_parallelism_beats_replication_on_bursty_arrivals():
  # Replication: each device serves one model, so a burst of A queues on one device while
  # B's sits idle. Two pipeline stages over both devices hold both models (half each) and
  # serve a burst of either at twice the rate, for 10% more latency.
  trace = bursty()
  replication = placement.search(2, DEVICE_MEMORY, PROFILES, trace, 5.0, configs=[ONE])
  alpaserve = placement.search(2, DEVICE_MEMORY, PROFILES, trace, 5.0)
  assert sorted(map(str, replication.best.placement.groups)) == ["1x1[A]", "1x1[B]"]
  assert [g.config for g in alpaserve.best.placement.groups] == [TWO_STAGES]
  assert set(alpaserve.best.placement.groups[0].models) == {"A", "B"}
  assert alpaserve.best.outcome.attainment > replication.best.outcome.attainment + 0.08


def test_every_group_keeps_to_the_devices_memory():
  trace = bursty(cv=2.0, rate=1.5)
  for memory, most_per_device in ((DEVICE_MEMORY, 1), (2 * GIB, 2)):
    result = placement.search(2, memory, PROFILES, trace, 5.0)
    for _, scored in result.candidates:
      for group in scored.placement.groups:
        assert placement.memory_used(group, PROFILES) <= memory
        if group.config == ONE:
          assert len(group.models) <= most_per_device
  # With room for both on each device, replication places both models on both devices.
  both = placement.search(2, 2 * GIB, PROFILES, trace, 5.0, configs=[ONE]).best.placement
  assert [sorted(g.models) for g in both.groups] == [["A", "B"], ["A", "B"]]


def test_greedy_adds_the_most_unserved_model_first():
  # A is asked for ten times as often: with one device, A gets it.
  trace = workload.gamma_trace(
      {"A": workload.GammaProcess(1.0, 1.0), "B": workload.GammaProcess(0.1, 1.0)}, 500.0
  )
  scored = placement.greedy_placement([ONE], PROFILES, trace, 5.0, device_memory=DEVICE_MEMORY)
  assert scored.placement.groups == (Group(ONE, ("A",)),)
  assert scored.outcome.unserved()["B"] == sum(trace.models == 1)


def test_partitions_split_the_devices_into_equal_groups_of_each_profiled_shape():
  shapes = placement.partitions(8, PROFILES, configs=[ONE, TWO_STAGES, ParallelConfig(2, 2)])
  assert [(len(p), str(p[0])) for p in shapes] == [(8, "1x1"), (4, "2x1"), (2, "2x2")]
  assert placement.partitions(3, PROFILES, configs=[TWO_STAGES]) == []


def test_a_model_that_fits_no_group_is_named_with_the_memory_it_needs():
  profiles = {**PROFILES, "big": profile("big", memory=4 * GIB)}
  with pytest.raises(ConfigError, match=r"big needs 2\.00 GiB per device even on 2x1"):
    placement.search(2, DEVICE_MEMORY, profiles, bursty(), 5.0)


def test_a_trace_asking_for_an_unprofiled_model_is_refused():
  trace = workload.gamma_trace({"C": workload.GammaProcess(1.0, 1.0)}, 10.0)
  with pytest.raises(ConfigError, match=r"models \['C'\] that have no profile"):
    placement.search(2, DEVICE_MEMORY, PROFILES, trace, 5.0)
