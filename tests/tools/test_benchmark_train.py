"""tools/benchmark_train: JSON results, consistent rates, and FLOP / parameter counts by hand."""

import json
import math
import os

import gin
import jax
import numpy as np
import pytest

from model_zoo import dense, models
from model_zoo.config import TransformerConfig
from tests.tools import without_tensorflow
from tests.tiny import tiny_config
from tools import benchmark_train, plain_flax_lm

REPO_ROOT = without_tensorflow.REPO_ROOT
TINY_GIN = os.path.join(REPO_ROOT, "gin/models/decoder_only_tiny.gin")


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def _tiny_decoder_params_by_hand(V=1024, D=128, H=4, K=1, Q=32, F=384, L=4):
  """gin/models/decoder_only_tiny.gin: tied embeddings, SwiGLU (2 input kernels), MQA."""
  per_layer = (
      D * H * Q  # query
      + 2 * D * K * Q  # key, value
      + H * Q * D  # attention output
      + 2 * D * F
      + F * D  # gated MLP: wi_0, wi_1, wo
      + 2 * D
  )  # pre-attention and pre-MLP RMSNorm scales
  return V * D + L * per_layer + D  # + final norm


def test_tiny_run_writes_consistent_json(tmp_path):
  out = tmp_path / "sub" / "bench.json"
  batch, seq, steps = 8, 64, 3
  rc = benchmark_train.main(
      [
          f"--gin_file={TINY_GIN}",
          "--gin.TransformerConfig.dtype='float32'",
          "--batch_size",
          str(batch),
          "--seq_len",
          str(seq),
          "--steps",
          str(steps),
          "--warmup_steps",
          "0",
          "--json_out",
          str(out),
          "--peak_tflops",
          "0.5",
      ]
  )
  assert rc == 0
  r = json.loads(out.read_text())
  for key in (
      "gin_files",
      "gin_overrides",
      "batch_size",
      "seq_len",
      "device_kind",
      "device_count",
      "jax_version",
      "params_total",
      "params_flops",
      "first_step_s",
      "compile_s",
      "step_time_median_s",
      "step_time_p90_s",
      "tokens_per_second",
      "model_flops_per_step",
      "achieved_tflops_per_device",
      "mfu",
      "peak_memory_bytes",
      "peak_memory_source",
  ):
    assert key in r, key
  assert r["gin_files"] == [TINY_GIN]
  assert r["gin_overrides"] == ["TransformerConfig.dtype='float32'"]
  assert r["dtype"] == "float32" and r["batch_size"] == batch and r["seq_len"] == seq
  assert r["device_count"] == jax.device_count() and r["jax_version"] == jax.__version__
  assert len(r["step_times_s"]) == steps
  assert r["step_time_p90_s"] >= r["step_time_median_s"] > 0
  assert r["tokens_per_second"] == pytest.approx(batch * seq / r["step_time_median_s"], rel=1e-12)
  assert r["peak_memory_bytes"] > 0 and math.isfinite(r["final_loss"])

  n = _tiny_decoder_params_by_hand()
  assert n == 885_888
  assert (
      r["params_total"] == n and r["params_flops"] == n
  )  # tied: the table is the output projection
  L, H, Q = 4, 4, 32
  flops = batch * seq * (6 * n + 12 * L * H * Q * seq)
  assert r["model_flops_per_step"] == pytest.approx(flops, rel=1e-12)
  achieved = flops / r["step_time_median_s"] / r["device_count"] / 1e12
  assert r["achieved_tflops_per_device"] == pytest.approx(achieved, rel=1e-9)
  assert r["mfu"] == pytest.approx(achieved / 0.5, rel=1e-9)


def test_encoder_decoder_counts_by_hand():
  V, D, H, Q, F, L = 1024, 128, 4, 32, 384, 2  # gin/models/encoder_decoder_tiny.gin, untied
  cfg = TransformerConfig(
      vocab_size=V,
      emb_dim=D,
      num_heads=H,
      num_kv_heads=H,
      head_dim=Q,
      mlp_dim=F,
      num_layers=L,
      num_encoder_layers=L,
      activations=("gelu", "linear"),
      tie_embeddings=False,
      dtype="float32",
  )
  model = models.EncoderDecoderModel(dense.EncoderDecoder(cfg))
  batch = benchmark_train.synthetic_batch(np.random.default_rng(0), 2, 16, V, 24)
  assert batch["encoder_input_tokens"].shape == (2, 24)
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), batch))
  counts = benchmark_train.param_counts(params, tie_embeddings=False)
  attn, mlp = 4 * D * H * Q, 3 * D * F
  encoder = L * (attn + mlp + 2 * D) + D  # + encoder_norm
  decoder = L * (2 * attn + mlp + 3 * D) + D + D * V  # self + cross; final norm; logits_dense
  assert counts["params_input_embedding"] == V * D
  assert counts["params_total"] == V * D + encoder + decoder
  assert counts["params_flops_encoder"] == encoder and counts["params_flops_decoder"] == decoder
  flops = benchmark_train.model_flops_per_step(cfg, counts, 2, 16, 24)
  assert flops == 2 * (
      24 * (6 * encoder + 12 * L * H * Q * 24) + 16 * (6 * decoder + 12 * L * H * Q * (16 + 24))
  )


@pytest.mark.parametrize(
    "kind, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("TPU v4", 275.0),
        ("TPU v5 lite", 197.0),
        ("TPU v5e", 197.0),
        ("TPU v5p", 459.0),
        ("TPU v5", 459.0),
        ("cpu", None),
    ],
)
def test_peak_table(kind, peak):
  assert benchmark_train.peak_tflops_for(kind) == peak


def test_gin_files_without_model_fail_clearly(tmp_path, capsys):
  path = tmp_path / "sizes.gin"
  path.write_text("TransformerConfig.vocab_size = 10\n")
  assert benchmark_train.main([f"--gin_file={path}", "--steps", "1"]) == 1
  assert "define no MODEL macro" in capsys.readouterr().err


def test_model_builds_without_tensorflow_or_seqio():
  """The GPU machine has no TensorFlow/SeqIO: building the model from gin must not import them."""
  without_tensorflow.assert_runs_without_tensorflow(f"""
      from tools import benchmark_train
      args, bindings = benchmark_train._parse_args(["--gin_file={TINY_GIN}"])
      model = benchmark_train._load_model(args, bindings)
      assert type(model).__name__ == "DecoderOnlyModel", model
  """)


@pytest.mark.slow
def test_baseline_alternates_and_reports_the_ratio(tmp_path):
  """--baseline: the plain loop's steps are timed beside podzoo's, and the ratio is theirs."""
  out = tmp_path / "bench.json"
  steps = 3
  rc = benchmark_train.main(
      [
          f"--gin_file={TINY_GIN}",
          "--gin.TransformerConfig.dtype='float32'",
          "--batch_size=8",
          "--seq_len=32",
          f"--steps={steps}",
          "--warmup_steps=1",
          "--baseline",
          f"--json_out={out}",
      ]
  )
  assert rc == 0
  r = json.loads(out.read_text())
  assert len(r["baseline_step_times_s"]) == len(r["step_times_s"]) == steps
  median = float(np.median(r["baseline_step_times_s"]))
  assert r["baseline_step_time_median_s"] == pytest.approx(median, rel=1e-12)
  assert r["speed_vs_baseline"] == pytest.approx(median / r["step_time_median_s"], rel=1e-12)
  achieved = r["model_flops_per_step"] / median / r["device_count"] / 1e12
  assert r["baseline_achieved_tflops_per_device"] == pytest.approx(achieved, rel=1e-9)
  assert r["baseline_mfu"] is None  # a CPU: no known peak
  assert r["baseline_first_step_s"] > r["baseline_step_time_median_s"]
  # Both train: fresh models start near log(vocab) and take 5 AdamW steps on 2 batches.
  assert math.isfinite(r["baseline_final_loss"]) and r["baseline_final_loss"] < 1.5 * math.log(1024)
  assert "plain" in benchmark_train.format_table({**r, "gin_files": [TINY_GIN]})


def test_plain_baseline_has_podzoos_parameter_count():
  """The plain loop is the same architecture: tiny's parameters, counted by hand, match."""
  cfg = tiny_config(
      vocab_size=1024, emb_dim=128, num_kv_heads=1, head_dim=32, mlp_dim=384, num_layers=4
  )
  model = plain_flax_lm.from_config(cfg)
  params, _ = plain_flax_lm.init(
      model, plain_flax_lm.adamw(1e-4), jax.random.PRNGKey(0), np.zeros((2, 8), np.int32)
  )
  assert sum(x.size for x in jax.tree.leaves(params)) == _tiny_decoder_params_by_hand()


def test_baseline_refuses_an_encoder_decoder(capsys):
  enc_dec = os.path.join(REPO_ROOT, "gin/models/encoder_decoder_tiny.gin")
  assert benchmark_train.main([f"--gin_file={enc_dec}", "--steps=1", "--baseline"]) == 1
  assert "--baseline times a plain decoder-only Flax loop" in capsys.readouterr().err
