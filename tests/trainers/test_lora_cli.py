"""LoRA through the train command line (gin/runs/lora.gin): a checkpoint's model fine-tuned
with adapters; the base parameters come out bit-identical, the adapters trained, the base
checkpoint's files untouched; eval with the same flags runs the adapted model; the adapters
exported alone with their card, which names the base checkpoint's model."""

import hashlib
import json
import pathlib

import numpy as np
import pytest

from tests.trainers.test_cli import quick_flags, run_cli, saved_state
from model_zoo.layers.lora import nested_params
from tests.trainers.test_finetune import _flat
from trainers import adapters, export_adapter, infer
from trainers import eval as eval_lib

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _digest(directory: pathlib.Path) -> dict[str, str]:
  return {
      str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
      for p in sorted(directory.rglob("*"))
      if p.is_file()
  }


@pytest.mark.slow
def test_lora_trains_only_the_adapters_of_a_checkpoints_model(tmp_path, capfd):
  base_dir, lora_dir = tmp_path / "base", tmp_path / "lora"
  code, log = run_cli(capfd, *quick_flags(base_dir, 2))
  assert code == 0, log
  before = _digest(base_dir / "checkpoints")
  flags = quick_flags(
      lora_dir,
      2,
      "--gin_file=gin/runs/lora.gin",
      f"--gin.INITIAL_CHECKPOINT_PATH='{base_dir}'",
      "--gin.LORA_RANK=2",
      "--gin.LORA_TARGETS=['attention/(query|value)/kernel$', 'mlp/wo/kernel$']",
      "--gin.linear_warmup_constant.warmup_steps=1",
  )
  code, log = run_cli(capfd, *flags)
  assert code == 0, log
  assert "initialised fresh" in log
  assert _digest(base_dir / "checkpoints") == before
  base = _flat(saved_state(base_dir, 2)["params"])
  tuned = _flat(saved_state(lora_dir, 2)["params"])
  adapters_paths = {p for p in tuned if p.endswith(("/lora_a", "/lora_b"))}
  assert {p.rsplit("/", 1)[0] for p in adapters_paths} == {
      "decoder/layers/self_attention/query",
      "decoder/layers/self_attention/value",
      "decoder/layers/mlp/wo",
  }
  assert set(tuned) - adapters_paths == set(base)
  for path, value in base.items():
    np.testing.assert_array_equal(tuned[path], value, err_msg=path)
  for path in adapters_paths:
    if path.endswith("lora_b"):  # B starts at zero; training moved it
      assert np.abs(tuned[path]).max() > 0, path
  assert tuned["decoder/layers/mlp/wo/lora_a"].shape[-1] == 2

  # Evaluating the run with its own flags restores base and adapters: the training run's
  # final eval of the same checkpoint, reproduced.
  metrics = lora_dir / "eval_metrics.jsonl"
  trained = json.loads(metrics.read_text().splitlines()[-1])
  code = eval_lib.main(flags + ["--gin_file=gin/runs/eval.gin"])
  log = "".join(capfd.readouterr())
  assert code == 0, log
  again = json.loads(metrics.read_text().splitlines()[-1])
  assert again["step"] == trained["step"] == 2
  assert again["cross_entropy"] == pytest.approx(trained["cross_entropy"], rel=1e-6)

  # Sample outputs for the card: the run's predictions through the infer command line.
  code = infer.main(flags + ["--gin_file=gin/runs/infer.gin", "--gin.infer.max_examples=3"])
  log = "".join(capfd.readouterr())
  assert code == 0, log
  predictions = lora_dir / "inference" / "predict-2.jsonl"
  predicted = [json.loads(line) for line in predictions.read_text().splitlines()]
  export_flags = flags + [
      "--gin_file=gin/runs/export_adapter.gin",
      "--gin.ADAPTER_DESCRIPTION='Genesis, 2 steps'",
      "--gin.export_adapter.num_samples=2",
  ]

  # A samples file that is not infer's output stops the export before anything is written.
  not_predictions = tmp_path / "notes.jsonl"
  not_predictions.write_text('{"text": "no prediction here"}\n')
  code = export_adapter.main(
      export_flags
      + [
          f"--gin.ADAPTER_DIR='{tmp_path / 'refused'}'",
          f"--gin.export_adapter.samples_file='{not_predictions}'",
      ]
  )
  log = "".join(capfd.readouterr())
  assert code == 1 and "samples_file" in log and "Traceback" not in log, log
  assert not (tmp_path / "refused").exists()

  # Export: the adapters alone, bit for bit, with a card naming the base model.
  code = export_adapter.main(
      export_flags
      + [
          f"--gin.ADAPTER_DIR='{tmp_path / 'adapter'}'",
          f"--gin.export_adapter.samples_file='{predictions}'",
      ]
  )
  log = "".join(capfd.readouterr())
  assert code == 0, log
  base_params = nested_params(base)
  loaded, card = adapters.load(str(tmp_path / "adapter"), base_params)
  for path, value in _flat(loaded).items():
    np.testing.assert_array_equal(value, tuned[path], err_msg=path)
  assert set(_flat(loaded)) == adapters_paths
  assert card["task"] == "kjv_genesis_lm" and card["steps"] == 2 and card["rank"] == 2
  assert card["description"] == "Genesis, 2 steps"
  assert card["sample_outputs"] == [
      {k: row[k] for k in ("input", "output", "target") if k in row} for row in predicted[:2]
  ]
  assert len(predicted) == 3 and all("output" in row for row in predicted)
  assert card["eval_metrics"]["cross_entropy"] == pytest.approx(trained["cross_entropy"])
  assert card["base_fingerprint"] == adapters.fingerprint(base_params)
