"""tools/compute_optimal: the budget from hardware by hand, the default rule (D = 20 N, 6 N D =
C), a fitted law from the experiment's JSON, the gin config it writes (parsed and built), and
its error messages."""

import json
import math

import gin
import jax
import numpy as np
import pytest

from model_zoo.errors import ConfigError, MissingFileError
from tests.tools import without_tensorflow
from tools import benchmark_common, benchmark_train, compute_optimal, scaling_laws

REPO_ROOT = without_tensorflow.REPO_ROOT
CONFIGURABLE = benchmark_common.model_configurable("test_compute_optimal")


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def _fit_json(tmp_path, law):
  path = tmp_path / "fit.json"
  path.write_text(json.dumps({"runs": [], "law": law}))
  return str(path)


def test_the_budget_from_chips_days_and_mfu_is_the_hand_calculation():
  # 256 chips x 7 days x 86,400 s x 197e12 FLOP/s x 0.4 = 1,792 x 86,400 x 78.8e12
  assert compute_optimal.budget_from_hardware(256, 7, 197, 0.4) == pytest.approx(1.220e22, rel=1e-3)
  assert compute_optimal.budget_from_hardware(1, 1, 1, 1.0) == 86_400e12


def test_the_default_rule_gives_twenty_tokens_per_parameter_and_spends_the_budget():
  for budget in (1e18, 1e21, 1e24):
    n, d = scaling_laws.CHINCHILLA.params(budget), scaling_laws.CHINCHILLA.tokens(budget)
    assert d / n == pytest.approx(20.0, rel=0.01)
    assert scaling_laws.flops(n, d) == pytest.approx(budget, rel=0.01)


def test_the_summary_gives_n_d_and_the_configs_own_count():
  summary, _ = compute_optimal.recommend(
      1e21, scaling_laws.CHINCHILLA, compute_optimal.DEFAULT_LAW, 2048, 256, 32128
  )
  n = math.sqrt(1e21 / 120)
  assert f"N = {n:,.0f} non-embedding parameters" in summary
  assert f"D = {20 * n:,.0f} tokens, D/N = 20.0" in summary
  assert "2,928,847,872 non-embedding parameters (+1.5% vs N)" in summary  # the ladder's rung


def test_a_fit_json_gives_its_own_law(tmp_path):
  law = compute_optimal.load_law(
      _fit_json(
          tmp_path, {"a": 2.0, "alpha": 0.4, "b": 1 / 12, "beta": 0.6, "r_squared_params": 0.9}
      )
  )
  assert law.params(1e20) == pytest.approx(2.0 * 1e8)
  assert law.tokens(1e20) == pytest.approx(1e12 / 12)
  assert law.params.r_squared == 0.9 and math.isnan(law.tokens.r_squared)
  summary, config = compute_optimal.recommend(1e20, law, "fitted", 256, 8, 8320)
  assert "N = 200,000,000 non-embedding" in summary and "D/N = 416.7" in summary
  assert f"TRAIN_STEPS = {math.ceil(1e12 / 12 / (8 * 256))}" in config


def test_the_gin_it_writes_builds_a_model_of_about_n(tmp_path):
  out = tmp_path / "model.gin"
  rc = compute_optimal.main(
      ["--flops=3e17", "--sequence_length=512", "--batch_size=16", f"--gin_out={out}"]
  )
  assert rc == 0
  n = scaling_laws.CHINCHILLA.params(3e17)  # 50M
  model = benchmark_common.load_model(
      [str(out)], REPO_ROOT, [], CONFIGURABLE, "test_compute_optimal"
  )
  tokens = np.zeros((1, 8), np.int32)
  batch = {"decoder_input_tokens": tokens, "decoder_target_tokens": tokens}
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), batch))
  counts = benchmark_train.param_counts(params, tie_embeddings=True)
  non_embedding = counts["params_total"] - counts["params_input_embedding"]
  assert non_embedding == pytest.approx(n, rel=0.05)  # the ladder's SIZE_TOLERANCE
  assert model.module.config.vocab_size == 32128
  steps = math.ceil(20 * n / (16 * 512))
  assert gin.query_parameter("%TRAIN_STEPS") == steps
  assert gin.query_parameter("%BATCH_SIZE") == 16
  assert gin.query_parameter("%TASK_FEATURE_LENGTHS") == {"targets": 512}
  assert gin.query_parameter("warmup_cosine_decay.decay_steps") == steps


def test_without_gin_out_the_config_goes_to_stdout(capsys):
  assert compute_optimal.main(["--chips=8", "--days=1", "--peak_tflops=989", "--mfu=0.4"]) == 0
  out = capsys.readouterr().out
  assert "(8 chips x 1 days x 989 TFLOP/s x MFU 0.4)" in out
  assert all(line.startswith("#") for line in out.splitlines()[:6])
  assert "include 'gin/models/decoder_only.gin'" in out


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--flops=1e21", "--chips=8"],
        ["--chips=8", "--days=1", "--peak_tflops=989"],
        ["--flops=1e21", "--batch_size=0"],
    ],
)
def test_bad_flag_combinations_are_refused(flags, capsys):
  with pytest.raises(SystemExit):
    compute_optimal.main(flags)
  assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--flops=-1"], "--flops=-1.0 must be a positive number"),
        (["--flops=nan"], "--flops=nan must be a positive number"),
        (["--chips=8", "--days=0", "--peak_tflops=989", "--mfu=0.4"], "--days=0.0 must be"),
        (
            ["--chips=8", "--days=1", "--peak_tflops=989", "--mfu=1.5"],
            "--mfu=1.5 must be in (0, 1]",
        ),
        (["--chips=8", "--days=1", "--peak_tflops=989", "--mfu=0"], "--mfu=0.0 must be in (0, 1]"),
    ],
)
def test_bad_values_are_named(flags, message, capsys):
  assert compute_optimal.main(flags) == 1
  assert message in capsys.readouterr().err


def test_a_missing_or_malformed_fit_is_named(tmp_path):
  with pytest.raises(MissingFileError, match="--fit=.*nope.json: no such file"):
    compute_optimal.load_law(str(tmp_path / "nope.json"))
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  with pytest.raises(ConfigError, match="bad.json is not JSON"):
    compute_optimal.load_law(str(bad))
  with pytest.raises(ConfigError, match="fit.json has no usable law.*'beta'"):
    compute_optimal.load_law(_fit_json(tmp_path, {"a": 1.0, "alpha": 0.5, "b": 1.0}))
  with pytest.raises(ConfigError, match="fit.json has no usable law"):
    compute_optimal.load_law(_fit_json(tmp_path, {"a": "x", "alpha": 0.5, "b": 1.0, "beta": 0.5}))
  with pytest.raises(ConfigError, match="positive coefficients"):
    compute_optimal.load_law(_fit_json(tmp_path, {"a": -1, "alpha": 0.5, "b": 1.0, "beta": 0.5}))
