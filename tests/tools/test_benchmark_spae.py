"""tools/benchmark_spae: a tiny run's table and JSON agree with the model and with each other,
without TensorFlow."""

import json
import os

import gin
import pytest

from tests.tools import without_tensorflow
from tools import benchmark_spae

REPO_ROOT = without_tensorflow.REPO_ROOT
TINY = [
    f"--gin_file={os.path.join(REPO_ROOT, 'gin/models/spae.gin')}",
    "--gin.SpaeConfig.channels=8",
    "--gin.SpaeConfig.num_res_blocks=0",
    "--gin.SpaeConfig.num_attention_blocks=0",
    "--gin.SpaeConfig.layer_tokens=(1, 4, 16)",
    "--gin.SpaeConfig.channel_multipliers=(1, 2, 2)",
    "--gin.SPAE_LM_VOCAB_SIZE=64",
    "--gin.SPAE_LM_EMBED_DIM=8",
    "--gin.SpaeConfig.last_code_id=64",
]


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.mark.slow
def test_tiny_run_writes_consistent_json(tmp_path, capsys):
  out = tmp_path / "spae.json"
  rc = benchmark_spae.main(
      [*TINY, "--batch_size", "8", "--repeats", "2", "--steps", "2", "--json_out", str(out)]
  )
  assert rc == 0
  results = json.loads(out.read_text())
  assert results["image_side"] == 16 and results["tokens_per_image"] == 21
  assert results["codebook_parameters"] == 64 * 8 < results["parameters"]
  assert results["train_images_per_s"] == pytest.approx(8000 / results["train_step_ms"])
  assert results["train_step_p90_ms"] >= results["train_step_ms"]
  assert results["encode_images_per_s"] > 0 and results["decode_images_per_s"] > 0
  assert "encode" in capsys.readouterr().out


def test_a_count_below_one_is_a_usage_error(capsys):
  with pytest.raises(SystemExit) as exit_info:
    benchmark_spae.main([*TINY, "--steps", "0"])
  assert exit_info.value.code == 2 and "--steps=0 must be >= 1" in capsys.readouterr().err


def test_imports_without_tensorflow():
  without_tensorflow.assert_runs_without_tensorflow("import tools.benchmark_spae")
