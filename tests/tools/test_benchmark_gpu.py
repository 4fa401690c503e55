"""tools/benchmark_gpu.py on a CPU at tiny dims: the JSON both sides need, no timing asserted."""

import json
import math

import jax
import pytest

from tests.tools import without_tensorflow
from tools import benchmark_gpu


def _check_side(side, peak):
  assert side["step_time_median_s"] > 0
  assert side["tokens_per_second"] > 0 and side["tflops_per_chip"] > 0
  assert side["mfu"] is None if peak is None else side["mfu"] > 0


@pytest.mark.slow
def test_tiny_run_reports_both_sides_and_their_ratio(tmp_path, monkeypatch):
  monkeypatch.chdir(without_tensorflow.REPO_ROOT)  # the gin files are relative to the repo
  out = tmp_path / "gpu.json"
  argv = ["--tiny", "--steps", "2", "--warmup_steps", "0", "--json_out", str(out)]
  assert benchmark_gpu.main(argv) == 0
  s = json.loads(out.read_text())
  r = s["benchmark_train"]
  assert r["attention_impl"] == "xla" and r["remat_policy"] == "none" and r["dtype"] == "float32"
  assert (r["batch_size"], r["seq_len"]) == (8, 64)
  for name in ("podzoo", "plain"):
    _check_side(s[name], r["peak_tflops_per_device"])
  assert s["podzoo"]["step_time_median_s"] == r["step_time_median_s"]
  assert s["plain"]["step_time_median_s"] == r["baseline_step_time_median_s"]
  ratio = s["plain"]["step_time_median_s"] / s["podzoo"]["step_time_median_s"]
  assert math.isclose(s["speed_vs_plain"], ratio, rel_tol=1e-9)
  assert math.isclose(s["podzoo"]["tokens_per_second"], 8 * 64 / r["step_time_median_s"])
  tflops = r["model_flops_per_step"] / r["baseline_step_time_median_s"] / 1e12
  assert math.isclose(s["plain"]["tflops_per_chip"], tflops / r["device_count"])
  assert s["anchors"]["target_speed_vs_plain"] == 1.10


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="cuDNN is there on a GPU")
def test_cudnn_without_a_gpu_is_one_line_saying_how_to_run_on_cpu(capsys, monkeypatch):
  monkeypatch.chdir(without_tensorflow.REPO_ROOT)
  assert benchmark_gpu.main(["--attention_impl", "cudnn", "--tiny"]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "needs a CUDA GPU" in err and "--tiny" in err


def test_imports_and_loads_the_1b_model_without_tensorflow():
  without_tensorflow.assert_runs_without_tensorflow("""
      from tools import benchmark_gpu
      args, bindings = benchmark_gpu._parse_args([])
      model = benchmark_gpu._load_model(args, bindings)
      cfg = model.module.config
      assert (cfg.num_layers, cfg.emb_dim, cfg.attention_impl) == (16, 2048, "cudnn"), cfg
      assert (cfg.dtype, cfg.param_dtype, args.batch_size, args.seq_len) == (
          "bfloat16", "float32", 8, 2048)
  """)
