"""What /metrics reports of the requests: how many were answered, by model, kind and outcome,
and the latency percentiles of those served (over the latest LATENCIES_KEPT per model)."""

import collections
import threading
import time
from typing import Any, Iterable

import numpy as np

from trainers.serving.errors import Overloaded, Unavailable

LATENCIES_KEPT = 10_000


def outcome(error: Exception) -> str:
  """How /metrics counts a request answered with `error`."""
  if isinstance(error, Overloaded):
    return "rejected"  # 429: queues full
  return "dropped" if isinstance(error, Unavailable) else "error"


class RequestStats:
  """Thread-safe counts and latencies of the requests to `models`."""

  def __init__(self, models: Iterable[str]):
    self._counts: collections.Counter = collections.Counter()
    self._latencies = {name: collections.deque(maxlen=LATENCIES_KEPT) for name in models}
    self._lock = threading.Lock()

  def record(self, model: str, kind: str, outcome: str, arrival: float = None) -> None:
    """One answered request; a served one ("ok") with its `arrival` (time.monotonic())."""
    with self._lock:
      self._counts[(model, kind, outcome)] += 1
      if outcome == "ok":
        self._latencies[model].append(time.monotonic() - arrival)

  def snapshot(self) -> dict[str, Any]:
    """{"requests": {(model, kind, outcome): n}, "latency_s": {model: {50: s, 99: s}}}."""
    with self._lock:
      counts = dict(self._counts)
      latencies = {m: list(v) for m, v in self._latencies.items()}
    return {
        "requests": counts,
        "latency_s": {
            m: {q: float(np.percentile(v, q)) for q in (50, 99)} for m, v in latencies.items() if v
        },
    }
