"""The serving simulator against traces worked out by hand, a single-queue recursion written
independently, and the trends AlpaServe reports (attainment 1.0 at low load, falling with
burstiness)."""

import math

import numpy as np
import pytest

from model_zoo.errors import ConfigError
from tests.trainers.serving.helpers import ONE, TWO_STAGES, profile, trace
from trainers.serving import workload
from trainers.serving.profiles import ConfigProfile, ModelProfile
from trainers.serving.simulator import (
    DROPPED,
    REJECTED,
    SERVED,
    UNPLACED,
    Group,
    Placement,
    simulate,
)


def test_a_two_stage_pipeline_trace_worked_by_hand():
  # Stages of 1 s each, SLO 2.5 s. Request 0 (t=0): stage 1 0-1, stage 2 1-2: 2.0 s.
  # Request 1 (t=0.5): stage 1 free at 1: 1-2, stage 2 2-3: 2.5 s, just in time.
  # Request 2 (t=1): would run 2-3, 3-4: 3.0 s > 2.5, dropped without using the devices.
  # Request 3 (t=5): 5-6, 6-7: 2.0 s.
  profiles = {"A": ModelProfile("A", {TWO_STAGES: ConfigProfile(TWO_STAGES, {1: (1.0, 1.0)}, 1)})}
  outcome = simulate(Placement((Group(TWO_STAGES, ("A",)),)), profiles, trace([0, 0.5, 1, 5]), 2.5)
  assert outcome.status.tolist() == [SERVED, SERVED, DROPPED, SERVED]
  np.testing.assert_allclose(outcome.latency_s[[0, 1, 3]], [2.0, 2.5, 2.0])
  assert outcome.attainment == 0.75
  assert outcome.latency_percentiles((50,)) == {"p50": 2.0}


def batching_profiles():
  one = ConfigProfile(ONE, {1: (1.0,), 2: (1.5,)}, 1)
  return {"A": ModelProfile("A", {ONE: one})}


def test_batches_form_from_waiting_requests_of_a_model_worked_by_hand():
  # Batch 1 takes 1 s, batch 2 1.5 s. Request 0 starts alone at 0 (ends 1). Requests 1 and 2
  # wait and start together at 1 (end 2.5: 2.3 s and 2.1 s); request 3 alone at 2.5 (2.9 s).
  outcome = simulate(
      Placement((Group(ONE, ("A",)),)),
      batching_profiles(),
      trace([0, 0.2, 0.4, 0.6]),
      3.0,
      max_batch=2,
  )
  assert outcome.status.tolist() == [SERVED] * 4
  np.testing.assert_allclose(outcome.latency_s, [1.0, 2.3, 2.1, 2.9])


def test_a_batch_takes_its_models_requests_past_another_models_worked_by_hand():
  # A at 0 runs alone (0-1). At 1 the head is A@0.1; A@0.3 joins its batch past B@0.2
  # (1-2.5), and B runs after it (2.5-3.5).
  profiles = {**batching_profiles(), "B": ModelProfile("B", batching_profiles()["A"].configs)}
  outcome = simulate(
      Placement((Group(ONE, ("A", "B")),)),
      profiles,
      trace([0, 0.1, 0.2, 0.3], [0, 0, 1, 0], names=("A", "B")),
      10.0,
      max_batch=2,
  )
  np.testing.assert_allclose(outcome.latency_s, [1.0, 2.4, 3.3, 2.2])


def test_a_batch_is_cut_to_meet_the_heads_deadline_worked_by_hand():
  # SLO 2.2 s. Request 1's deadline is 2.4: a batch of 2 from 1 ends 2.5, too late, so it
  # runs alone (1-2, 1.8 s). At 2, request 2 (deadline 2.6) cannot make it even alone (3.0)
  # and is dropped; so is request 3 (deadline 2.8).
  outcome = simulate(
      Placement((Group(ONE, ("A",)),)),
      batching_profiles(),
      trace([0, 0.2, 0.4, 0.6]),
      2.2,
      max_batch=2,
  )
  assert outcome.status.tolist() == [SERVED, SERVED, DROPPED, DROPPED]
  np.testing.assert_allclose(outcome.latency_s[:2], [1.0, 1.8])


def single_queue_reference(times, seconds, slo):
  """One device, one request at a time, in order; a request that would miss its deadline is
  skipped (Lindley's recursion with dropping)."""
  free, served, latencies = 0.0, [], []
  for t in times:
    start = max(t, free)
    if start + seconds <= t + slo:
      free = start + seconds
      served.append(True)
      latencies.append(free - t)
    else:
      served.append(False)
  return np.asarray(served), np.asarray(latencies)


def test_one_device_matches_the_single_queue_recursion_on_a_bursty_trace():
  times = workload.GammaProcess(rate=0.8, cv=3.0).arrivals(600.0, np.random.default_rng(3))
  outcome = simulate(Placement((Group(ONE, ("A",)),)), {"A": profile("A")}, trace(times), 4.0)
  served, latencies = single_queue_reference(times, 1.0, 4.0)
  assert 0.2 < served.mean() < 0.95  # a case where dropping matters
  np.testing.assert_array_equal(outcome.status == SERVED, served)
  np.testing.assert_allclose(outcome.latency_s[served], latencies)


def test_requests_go_to_the_shorter_queue_and_a_full_queue_rejects():
  # Two one-device replicas of A, 1 s a request; four requests at once. The first two
  # start at once on the two devices; the next two wait, one in each queue.
  placement = Placement((Group(ONE, ("A",)), Group(ONE, ("A",))))
  profiles = {"A": profile("A")}
  outcome = simulate(placement, profiles, trace([0, 0, 0, 0]), 10.0)
  np.testing.assert_allclose(outcome.latency_s, [1.0, 1.0, 2.0, 2.0])
  # With queues of at most two, the fifth request at 0 is rejected: both queues hold two
  # requests, none started yet (a batch starts after the requests of its instant arrive).
  outcome = simulate(placement, profiles, trace([0, 0, 0, 0, 0]), 10.0, max_queue=2)
  assert outcome.status.tolist() == [SERVED] * 4 + [REJECTED]


def test_a_model_without_a_replica_is_unplaced_and_counted_unserved():
  outcome = simulate(
      Placement((Group(ONE, ("A",)),)),
      {"A": profile("A"), "B": profile("B")},
      trace([0, 1, 2], [0, 1, 0], names=("A", "B")),
      5.0,
  )
  assert outcome.status.tolist() == [SERVED, UNPLACED, SERVED]
  assert outcome.unserved() == {"A": 0, "B": 1}
  assert outcome.counts() == {"served": 2, "dropped": 0, "rejected": 0, "unplaced": 1}


def low_and_bursty(cv, rate):
  return workload.gamma_trace(
      {"A": workload.GammaProcess(rate, cv), "B": workload.GammaProcess(rate, cv)}, 3000.0, seed=0
  )


def test_attainment_is_one_at_very_low_load_and_falls_as_burstiness_rises():
  placement = Placement((Group(ONE, ("A",)), Group(ONE, ("B",))))
  profiles = {"A": profile("A", seconds=0.1), "B": profile("B", seconds=0.1)}
  assert simulate(placement, profiles, low_and_bursty(1.0, 0.01), 0.5).attainment == 1.0
  attainment = [
      simulate(placement, profiles, low_and_bursty(cv, 5.0), 0.5).attainment for cv in (1, 2, 4, 8)
  ]
  assert all(a > b + 0.02 for a, b in zip(attainment, attainment[1:])), attainment


def test_a_placement_naming_an_unprofiled_model_is_refused():
  with pytest.raises(ConfigError, match=r"models \['C'\] that have no profile"):
    simulate(Placement((Group(ONE, ("C",)),)), {"A": profile("A")}, trace([0]), 1.0)


def test_percentiles_of_nothing_served_are_nan():
  outcome = simulate(Placement(()), {"A": profile("A")}, trace([0.0]), 1.0)
  assert math.isnan(outcome.latency_percentiles()["p99"]) and outcome.attainment == 0.0
