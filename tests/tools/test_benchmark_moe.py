"""tools/benchmark_moe: the dense and GLaM variants have equal activated parameters (up to the
router, counted by hand), and one short comparison run fills every column."""

import json
import os

import gin
import pytest

from model_zoo.errors import ConfigError
from model_zoo.moe import layer as moe_layer
from tests.tools import without_tensorflow
from tools import benchmark_moe, op_profile

GLAM_TINY = os.path.join(without_tensorflow.REPO_ROOT, "gin/models/glam_tiny.gin")
D, F, E, LAYERS = 128, 384, 4, 4  # glam_tiny.gin; MoE in layers 2 and 4


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def test_variant_bindings_halve_the_expert_width_for_top_2():
  variants = benchmark_moe.variant_bindings(384, 2, [4, 16], ["einsum"])
  assert list(variants) == ["dense", "GLaM E=4 einsum", "GLaM E=16 einsum"]
  assert variants["dense"] == ["TransformerConfig.moe = None"]
  assert "MoeConfig.mlp_dim = 192" in variants["GLaM E=16 einsum"]
  assert "MoeConfig.num_experts = 16" in variants["GLaM E=16 einsum"]
  with pytest.raises(ConfigError, match="mlp_dim=385 is not a multiple of MoeConfig.top_k=2"):
    benchmark_moe.variant_bindings(385, 2, [4], ["einsum"])


def test_a_dense_config_is_refused():
  dense_gin = os.path.join(without_tensorflow.REPO_ROOT, "gin/models/decoder_only_tiny.gin")
  with pytest.raises(ConfigError, match="without mixture-of-experts layers"):
    benchmark_moe.load_variants([dense_gin], "", [], [4], ["einsum"])


def test_imports_without_tensorflow():
  without_tensorflow.assert_runs_without_tensorflow("from tools import benchmark_moe, op_profile")


@pytest.mark.slow
def test_short_comparison_fills_every_column(tmp_path, capsys):
  out = tmp_path / "moe.json"
  rc = benchmark_moe.main(
      [
          f"--gin_file={GLAM_TINY}",
          "--gin.TransformerConfig.dtype='float32'",
          f"--experts={E}",
          "--dispatch=einsum",
          "--batch_size=8",
          "--seq_len=32",
          "--steps=2",
          "--warmup_steps=0",
          "--profile_steps=1",
          f"--json_out={out}",
      ]
  )
  assert rc == 0
  rows = json.loads(out.read_text())["models"]
  dense, glam = rows["dense"], rows[f"GLaM E={E} einsum"]
  # Activated: the dense FFN (3 D F) equals two of the E experts (3 D F/2 each); the GLaM
  # model adds its routers (D x E in each of the 2 MoE layers). Total: the experts in full.
  assert glam["params_activated"] - dense["params_activated"] == 2 * D * E
  assert glam["params_experts"] == 2 * E * 3 * D * (F // 2)
  assert glam["params_total"] - dense["params_total"] == 2 * D * E + 2 * (
      E * 3 * D * F // 2 - 3 * D * F
  )
  assert dense["step_time_vs_dense"] == 1.0
  assert glam["step_time_vs_dense"] == glam["step_time_median_s"] / dense["step_time_median_s"]
  assert glam["tokens_per_second"] == pytest.approx(8 * 32 / glam["step_time_median_s"])
  assert glam["compiled_step_bytes"] > dense["compiled_step_bytes"] > 0  # more parameters
  assert all(glam["op_seconds"][scope] > 0 for scope in moe_layer.SCOPES)
  assert all(dense["op_seconds"][scope] == 0 for scope in moe_layer.SCOPES)
  assert dense["op_seconds"][op_profile.REST] > 0
  table = capsys.readouterr().out
  assert f"GLaM E={E} einsum |" in table and "op ms per step" in table
