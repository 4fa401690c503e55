"""GLaM-tiny (gin/models/glam_tiny.gin) trains through `python -m trainers.train` on the
quickstart task: the loss falls and the router losses and metrics reach train_metrics.jsonl."""

import json

import pytest

from tests.trainers.test_cli import quick_flags, run_cli

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.slow
def test_glam_tiny_trains_and_logs_router_losses(tmp_path, capfd):
  flags = quick_flags(
      tmp_path,
      12,
      "--gin_file=gin/models/glam_tiny.gin",
      "--gin.TransformerConfig.dtype='float32'",  # glam.gin's bfloat16 is slow on a CPU
      "--gin.linear_warmup_constant.warmup_steps=1",
  )
  code, log = run_cli(capfd, *flags)
  assert code == 0, log
  rows = [json.loads(line) for line in (tmp_path / "train_metrics.jsonl").read_text().splitlines()]
  losses = [row["loss"] for row in rows if "loss" in row]
  assert losses[-1] < losses[0] - 0.3, losses
  last = rows[-1]
  balance = [k for k in last if k.startswith("aux/") and k.endswith("balance_loss")]
  assert balance and all(last[k] >= 0.01 * 0.99 for k in balance)  # >= weight x 1
  assert any(k.endswith("dropped_fraction") for k in last)
  assert any(k.endswith("dropped_fraction/max") for k in last)  # over the scanned MoE layers
  config = (tmp_path / "config.gin").read_text()
  assert "MoeConfig.num_experts = 4" in config
