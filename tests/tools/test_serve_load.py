"""tools/serve_load: its summary against hand-made answers, and a bounded load test of a
real server on the loopback interface (tiny models on fake CPU devices): every request is
answered, none lost."""

import asyncio

import jax
import numpy as np
import pytest

from tests.trainers.serving.test_http_app import served
from tools import serve_load
from trainers.serving import engine as engine_lib
from trainers.serving import workload
from trainers.serving.http_app import create_app
from trainers.serving.profiles import ParallelConfig
from trainers.serving.simulator import Group, Placement

Answer = serve_load.Answer


def test_summary_counts_statuses_and_losses_and_takes_served_percentiles():
  answers = [
      Answer("a", 0.0, 200, 0.1),
      Answer("a", 0.5, 200, 0.3),
      Answer("b", 1.0, 429, 0.01),
      Answer("b", 1.5, None, 2.0, "ReadTimeout"),
      Answer("a", 2.0, 200, 1.0),
  ]
  summary = serve_load.summarize(answers)
  assert summary["all"]["sent"] == 5 and summary["all"]["lost"] == 1
  assert summary["all"]["lost_by"] == {"ReadTimeout": 1}
  assert summary["all"]["status"] == {200: 3, 429: 1}
  assert summary["all"]["p50_s"] == pytest.approx(np.percentile([0.1, 0.3, 1.0], 50))
  assert summary["all"]["p99_s"] == pytest.approx(np.percentile([0.1, 0.3, 1.0], 99))
  assert summary["all"]["served_per_s"] == pytest.approx(3 / 3.5)  # last answer at 3.5 s
  assert summary["models"]["b"]["p50_s"] is None and summary["models"]["b"]["lost"] == 1
  table = serve_load.format_table(summary)
  assert "all | 5 | 3 | 1 | 0 | 1 |" in table and "b | 2 | 0 | 1 | 0 | 1 | 0.00 | - | -" in table


def test_no_options_is_refused(capsys):
  with pytest.raises(SystemExit) as e:
    serve_load.main([])
  assert e.value.code == 2 and "--models" in capsys.readouterr().err


def test_a_bursty_replay_against_a_real_server_loses_nothing():
  models = [served("a", 0), served("b", 1)]
  placement = Placement(
      (Group(ParallelConfig(1, 2), ("a", "b")), Group(ParallelConfig(1, 1), ("a",)))
  )
  engine = engine_lib.Engine(models, placement, jax.devices(), max_batch=4, max_queue=4)
  trace = workload.gamma_trace(
      {"a": workload.GammaProcess(6.0, 3.0), "b": workload.GammaProcess(3.0, 3.0)}, 4.0, seed=2
  )
  try:
    with serve_load.local_server(create_app(engine)) as url:
      answers = asyncio.run(serve_load.replay(url, trace))
  finally:
    engine.close()
  summary = serve_load.summarize(answers)
  assert summary["all"]["sent"] == len(trace) > 20
  assert summary["all"]["lost"] == 0
  assert set(summary["all"]["status"]) <= {200, 429, 503} and summary["all"]["status"][200] > 0
  served_latency = [a.latency_s for a in answers if a.status == 200]
  assert summary["all"]["p99_s"] == pytest.approx(np.percentile(served_latency, 99))
  # The engine counted what the clients saw served.
  counts = engine.metrics()["requests"]
  assert sum(n for (m, k, o), n in counts.items() if o == "ok") == summary["all"]["status"][200]
