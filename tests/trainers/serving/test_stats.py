"""The request statistics /metrics reports: counts by outcome, and latency percentiles of the
served requests only."""

import time

import numpy as np
import pytest

from trainers.serving import stats
from trainers.serving.errors import BadRequest, Overloaded, Unavailable


def test_each_refusal_is_counted_as_its_outcome():
  assert stats.outcome(Overloaded("full")) == "rejected"
  assert stats.outcome(Unavailable("late")) == "dropped"
  assert stats.outcome(BadRequest("field")) == "error"
  assert stats.outcome(RuntimeError("bug")) == "error"


def test_latency_percentiles_are_of_the_served_requests():
  recorded = stats.RequestStats(["a", "b"])
  waited = [0.1, 0.2, 0.3, 0.4, 5.0]
  for seconds in waited:
    recorded.record("a", "generate", "ok", time.monotonic() - seconds)
  recorded.record("a", "generate", "dropped")
  recorded.record("a", "score", "rejected")
  snapshot = recorded.snapshot()
  assert snapshot["requests"] == {
      ("a", "generate", "ok"): 5,
      ("a", "generate", "dropped"): 1,
      ("a", "score", "rejected"): 1,
  }
  assert list(snapshot["latency_s"]) == ["a"]  # b served nothing: no percentiles
  for q in (50, 99):
    assert snapshot["latency_s"]["a"][q] == pytest.approx(np.percentile(waited, q), abs=0.05)
