"""Serving profiles and request traces: the Gamma process's rate and CV against the formula,
files written and read back, and bad files named with what is wrong."""

import numpy as np
import pytest

from model_zoo.errors import ConfigError, MissingFileError
from tests.trainers.serving.helpers import ONE, TWO_STAGES, profile
from trainers.serving import profiles, workload
from trainers.serving.profiles import ConfigProfile, ParallelConfig


@pytest.mark.parametrize("cv", [0.5, 1.0, 4.0])
def test_gamma_gaps_have_the_asked_mean_and_coefficient_of_variation(cv):
  times = workload.GammaProcess(rate=20.0, cv=cv).arrivals(5000.0, np.random.default_rng(0))
  gaps = np.diff(times)
  assert times[-1] < 5000.0 and abs(len(times) / 5000.0 - 20.0) < 20.0 * 0.05 * cv
  assert abs(gaps.mean() - 1 / 20.0) < 0.05 * cv / 20.0
  assert abs(gaps.std() / gaps.mean() - cv) < 0.05 * cv


def test_a_gamma_trace_merges_the_models_arrivals_in_time_order():
  processes = {"A": workload.GammaProcess(2.0, 1.0), "B": workload.GammaProcess(0.5, 3.0)}
  trace = workload.gamma_trace(processes, 1000.0, seed=7)
  assert np.all(np.diff(trace.times) >= 0) and trace.model_names == ("A", "B")
  per_model = np.bincount(trace.models) / 1000.0
  assert abs(per_model[0] - 2.0) < 0.2 and abs(per_model[1] - 0.5) < 0.15
  again = workload.gamma_trace(processes, 1000.0, seed=7)
  np.testing.assert_array_equal(trace.times, again.times)


def test_a_trace_file_round_trips_and_bad_ones_are_named(tmp_path):
  trace = workload.gamma_trace({"A": workload.GammaProcess(1.0, 2.0)}, 50.0)
  path = tmp_path / "trace.jsonl"
  workload.save(trace, path)
  back = workload.load(path)
  np.testing.assert_allclose(back.times, trace.times)
  assert back.model_names == ("A",) and back.models.tolist() == trace.models.tolist()
  with pytest.raises(ConfigError, match=r"asks for models \['A'\], which are not among \['B'\]"):
    workload.load(path, model_names=["B"])
  path.write_text('{"time": 1.0, "model": "A"}\n{"time": "soon"}\n')
  with pytest.raises(ConfigError, match=r"trace.jsonl:2: expected"):
    workload.load(path)
  with pytest.raises(MissingFileError):
    workload.load(tmp_path / "none.jsonl")


def test_a_batch_takes_the_latency_of_the_smallest_profiled_batch_that_holds_it():
  config = ConfigProfile(ONE, {1: (1.0,), 4: (2.0,), 8: (3.0,)}, 1)
  assert [config.latency(b) for b in (1, 2, 4, 5, 8)] == [(1.0,), (2.0,), (2.0,), (3.0,), (3.0,)]
  with pytest.raises(ConfigError, match="exceeds the largest profiled batch 8"):
    config.latency(9)


def test_a_profile_needs_one_latency_per_stage():
  with pytest.raises(ConfigError, match=r"expected 2 non-negative seconds"):
    ConfigProfile(TWO_STAGES, {1: (1.0,)}, 1)
  with pytest.raises(ConfigError, match="stages >= 1"):
    ParallelConfig(0, 1)


def test_profiles_round_trip_through_their_file_and_a_missing_shape_is_named(tmp_path):
  path = tmp_path / "profiles.jsonl"
  profiles.save([profile("A"), profile("B", seconds=2.0)], path)
  back = profiles.load(path)
  assert back == {"A": profile("A"), "B": profile("B", seconds=2.0)}
  assert back["B"].single_device_latency() == 2.0
  with pytest.raises(ConfigError, match=r"no profile for the parallel config 4x2"):
    back["A"].on(ParallelConfig(4, 2))
  path.write_text('{"model": "A", "configs": [{"stages": 1}]}\n')
  with pytest.raises(ConfigError, match="profiles.jsonl is not valid: KeyError"):
    profiles.load(path)
