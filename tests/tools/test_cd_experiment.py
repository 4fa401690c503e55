"""tools/cd_experiment.py: its best-of-K KL estimate against the closed form, its headline
matching, and (slow) the whole pipeline on a few steps."""

import json
import math

import numpy as np
import pytest

from tools import cd_experiment


@pytest.mark.parametrize("k", [2, 4, 16])
def test_best_of_k_estimate_equals_the_closed_form_for_untied_rewards(k):
  """With continuous rewards the best of K has KL exactly log K - (K-1)/K (the paper's bound
  is tight then): the estimate from samples must find it."""
  rs = np.random.RandomState(k)
  pool = rs.rand(4000, 64)
  subsets = rs.rand(4000, 64).argsort(axis=1)[:, :k]
  best, estimate = cd_experiment.best_of_k(pool, subsets)
  assert estimate == pytest.approx(cd_experiment.best_of_k_bound(k), abs=0.03)
  rewards = np.take_along_axis(pool, subsets, axis=1)
  np.testing.assert_array_equal(np.take_along_axis(pool, best[:, None], 1)[:, 0], rewards.max(1))


def test_best_of_k_bound_is_the_papers():
  assert cd_experiment.best_of_k_bound(1) == 0.0
  assert cd_experiment.best_of_k_bound(50) == pytest.approx(math.log(50) - 49 / 50)


def test_headline_interpolates_best_of_k_in_log_k():
  rows = [
      {"method": "base", "setting": "sampling", "langid:de": -5.0},
      {"method": "best-of-K", "setting": "K=2", "langid:de": -3.0},
      {"method": "best-of-K", "setting": "K=8", "langid:de": -1.0},
      {"method": "blockwise cd_q_de", "setting": "K=4", "langid:de": -2.0},
      {"method": "blockwise cd_q_de", "setting": "K=16", "langid:de": 0.5},
      {"method": "blockwise cd_q_de", "setting": "K=2", "langid:de": -4.0},
  ]
  matched = cd_experiment.headline(rows)
  assert matched[0] == {"blockwise_k": 4, "best_of_k_with_same_reward": pytest.approx(4.0)}
  assert matched[1] == {"blockwise_k": 16, "best_of_k_with_same_reward": None}
  # Between base sampling (K = 1) and K = 2: halfway in log K.
  assert matched[2]["best_of_k_with_same_reward"] == pytest.approx(math.sqrt(2))


@pytest.mark.slow
def test_the_experiment_runs_end_to_end(tmp_path):
  out = tmp_path / "cd.json"
  code = cd_experiment.main(
      [
          "--base_steps=20",
          "--scorer_steps=4",
          "--rollout_prompts=8",
          "--eval_prompts=8",
          "--lambdas",
          "1",
          "--blockwise_k",
          "2",
          "--best_of_k",
          "2",
          "4",
          f"--out_dir={tmp_path / 'runs'}",
          f"--json_out={out}",
          f"--plot={tmp_path / 'cd.png'}",
      ]
  )
  assert code == 0
  r = json.loads(out.read_text())
  methods = {row["method"] for row in r["rows"]}
  assert {
      "base",
      "best-of-K",
      "token-wise cd_q_de",
      "blockwise cd_q_de",
      "control token",
  } <= methods
  assert (tmp_path / "cd.png").stat().st_size > 0
