"""tools/benchmark_cd: every program timed, rates and ratios from the medians, fixed lengths, and
blockwise CD / best-of-K with K = 1 drawing plain sampling's tokens."""

import json
import os
import statistics

import gin
import jax
import numpy as np
import pytest

from tests.tools import without_tensorflow
from tools import benchmark_cd, benchmark_common, benchmark_decode
from model_zoo.feature_converters import DecoderFeatureConverter

TINY_GIN = os.path.join(without_tensorflow.REPO_ROOT, "gin/models/decoder_only_tiny.gin")
SMALL = {"dtype": "'float32'", "num_layers": 1, "vocab_size": 64, "emb_dim": 32, "mlp_dim": 64}


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def small_model():
  bindings = [f"TransformerConfig.{k} = {v}" for k, v in SMALL.items()]
  return benchmark_common.load_model(
      [TINY_GIN], "", bindings, benchmark_cd._configured_model, "benchmark_cd"
  )


@pytest.mark.slow
def test_tiny_run_reports_every_program_from_its_median(tmp_path, capsys):
  batch, gen_len, k = 2, 4, 2
  out = tmp_path / "cd.json"
  argv = [f"--gin_file={TINY_GIN}"] + [f"--gin.TransformerConfig.{k}={v}" for k, v in SMALL.items()]
  argv += ["--batch", str(batch), "--prompt_len", "3", "--gen_len", str(gen_len)]
  argv += ["--repeats", "3", "--num_samples", str(k), "--block_length", "2", "--output", str(out)]
  assert benchmark_cd.main(argv) == 0
  table = capsys.readouterr().out
  r = json.loads(out.read_text())
  assert list(r["programs"]) == list(benchmark_cd.PROGRAMS)
  assert (r["batch"], r["gen_len"], r["num_samples"], r["block_length"]) == (batch, gen_len, k, 2)
  assert r["platform"] == jax.devices()[0].platform
  plain = statistics.median(r["programs"]["sampling"]["times_s"])
  for name, p in r["programs"].items():
    assert len(p["times_s"]) == 3 and p["time_median_s"] == statistics.median(p["times_s"])
    assert p["output_tokens"] == batch * gen_len  # per example, whatever the rows decoded
    assert p["rows_decoded"] == batch * (k if name in ("blockwise", "best_of_k") else 1)
    assert p["tokens_per_second"] == pytest.approx(batch * gen_len / p["time_median_s"])
    assert p["ratio_vs_sampling"] == pytest.approx(p["time_median_s"] / plain)
    assert r["ratios"][name] == p["ratio_vs_sampling"]
    assert f"{p['ratio_vs_sampling']:.2f}" in table
    # EOS suppressed: every row generated exactly gen_len tokens.
    tokens = np.asarray(r["outputs"][name])
    assert tokens.shape == (batch, gen_len) and p["fixed_length"]
    assert not np.any(tokens == r["eos_id"]), name
  assert r["tokenwise_target_met"] == (r["ratios"]["tokenwise"] <= 2.0)
  assert ("met" if r["tokenwise_target_met"] else "NOT met") in table
  b = r["breakdown"]["tokenwise_2"]
  assert b["scorer_loops_s"] == pytest.approx(2 * r["programs"]["scorer_alone"]["time_median_s"])
  assert b["base_share"] + b["scorer_share"] + b["overhead_share"] == pytest.approx(1.0)


def test_one_sample_decoders_draw_plain_samplings_tokens():
  """Blockwise CD and best-of-K with K = 1 reduce to plain sampling with the same key."""
  model = small_model()
  scorer = benchmark_cd.scorer_like(model)
  device, length = jax.devices()[0], 3 + 5
  params = benchmark_cd.init_params(model, 0, length, device)
  scorer_params = [benchmark_cd.init_params(scorer, i, length, device) for i in (1, 2)]
  prompts = benchmark_decode.random_prompts(np.random.default_rng(0), 3, 3, model.vocab_size)
  batch = DecoderFeatureConverter.prompt_batch(prompts, 3, length)
  progs = benchmark_cd.programs(model, scorer, params, scorer_params, num_samples=1, block_length=2)
  tokens = {}
  for name in ("sampling", "blockwise", "best_of_k"):
    fn, fn_params, decoder_params = progs[name]
    tokens[name] = np.asarray(
        jax.jit(fn)(fn_params, decoder_params, batch, jax.random.PRNGKey(7))[0]
    )
  assert not np.any(tokens["sampling"] == model.eos_id)
  np.testing.assert_array_equal(tokens["blockwise"], tokens["sampling"])
  np.testing.assert_array_equal(tokens["best_of_k"], tokens["sampling"])


def test_runs_without_tensorflow():
  without_tensorflow.assert_runs_without_tensorflow("import tools.benchmark_cd")
