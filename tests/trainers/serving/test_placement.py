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


def test_model_buckets_cut_by_size_and_never_between_models_of_one_size():
  profiles = {
      "S2": profile("S2", memory=GIB // 2),
      "S1": profile("S1", memory=GIB // 2),
      "M": profile("M", memory=GIB),
      "L": profile("L", memory=2 * GIB),
  }
  names = ["L", "S1", "M", "S2"]
  assert placement.model_buckets(names, profiles, 2) == [
      (("S1", "S2", "M", "L"),),
      (("S1", "S2"), ("M", "L")),
      (("S1", "S2", "M"), ("L",)),
  ]
  assert (("S1", "S2"), ("M",), ("L",)) in placement.model_buckets(names, profiles, 3)
  assert placement.model_buckets(["S1", "S2"], profiles, 2) == [(("S1", "S2"),)]


@pytest.mark.parametrize("devices, parts", [(3, 2), (64, 2), (17, 2), (16, 3)])
def test_device_splits_give_every_bucket_devices_and_use_them_all(devices, parts):
  splits = placement.device_splits(devices, parts)
  assert splits and all(len(s) == parts and sum(s) == devices and min(s) > 0 for s in splits)
  assert len(set(splits)) == len(splits)
  if devices == 3:
    assert splits == [(1, 2), (2, 1)]
  if devices == 64:  # in steps of an eighth: 8, 16, ..., 56 for the first bucket
    assert [s[0] for s in splits] == list(range(8, 64, 8))


def test_buckets_give_a_large_model_pipeline_stages_beside_a_small_one_on_its_own_device():
  # Three devices of 1 GiB: L (2 GiB) fits only in two stages, S anywhere. Equal groups can
  # only be three single devices (2x1 does not divide 3), where L fits nowhere; a bucket of
  # its own gives L a 2x1 group and S the third device.
  profiles = {"S": profile("S", memory=GIB // 2), "L": profile("L", seconds=2.0, memory=2 * GIB)}
  trace = workload.gamma_trace(
      {name: workload.GammaProcess(0.05, 1.0) for name in profiles}, 2000.0, seed=3
  )
  alone = placement.search(3, GIB, profiles, trace, 5.0, max_buckets=1).best
  assert alone.outcome.unserved()["L"] == sum(trace.models == trace.model_names.index("L"))
  bucketed = placement.search(3, GIB, profiles, trace, 5.0).best
  assert sorted(map(str, bucketed.placement.groups)) == ["1x1[S]", "2x1[L]"]
  assert bucketed.outcome.attainment == 1.0


def test_a_buckets_requests_are_those_of_its_models_in_their_order():
  trace = bursty()
  b = trace.model_names.index("B")
  only_b = placement.only_models(trace, ["B"])
  assert only_b.model_names == trace.model_names and set(only_b.models) == {b}
  assert list(only_b.times) == list(trace.times[trace.models == b])
