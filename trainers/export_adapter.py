"""`python -m trainers.export_adapter <the LoRA run's flags> --gin_file=gin/runs/export_adapter.gin
--gin.ADAPTER_DIR=...`: the adapters of a LoRA run's newest checkpoint, saved alone with their
card (trainers/adapters.py): the base model's fingerprint, the adapted kernels, rank and
alpha, the training task, the step, the run's eval metrics at that step and, with
`export_adapter.samples_file` (the .jsonl `python -m trainers.infer` wrote for the run), its
first predictions as sample outputs, from which Stylus's refiner describes the adapter."""

import json
import os
from typing import Any, Optional

import gin
import jax

from model_zoo.errors import ConfigError
from model_zoo.lora import LoraModule
from trainers import adapters, cli, restore
from trainers import train  # noqa: F401  (registers train(), which the run configs read here bind)


def _eval_metrics(model_dir: str, step: int) -> dict[str, float]:
  """The run's eval metrics at `step` (eval_metrics.jsonl's row of it), or none."""
  path = os.path.join(model_dir, "eval_metrics.jsonl")
  if not os.path.isfile(path):
    return {}
  with open(path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  row = next((r for r in reversed(rows) if r.get("step") == step), {})
  return {k: v for k, v in row.items() if k not in ("step", "time")}


SAMPLE_FIELDS = ("input", "output", "target")


def _sample_outputs(path: str, count: int) -> list[dict[str, str]]:
  """The first `count` predictions of an infer output file: input, output (and target)."""
  try:
    with open(path, encoding="utf-8") as f:
      rows = [json.loads(line) for line in f if line.strip()]
  except (OSError, ValueError) as e:
    raise ConfigError(
        f"export_adapter.samples_file {path} cannot be read as infer's .jsonl output: {e}"
    ) from None
  samples = [{k: row[k] for k in SAMPLE_FIELDS if k in row} for row in rows[:count]]
  if not samples or any("output" not in s for s in samples):
    raise ConfigError(
        f"export_adapter.samples_file {path} holds no predictions; give the file that "
        "`python -m trainers.infer` (mode 'predict') wrote for this run"
    )
  return samples


@gin.configurable
def export_adapter(
    *,
    model=gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    adapter_dir: str = gin.REQUIRED,
    task: Optional[str] = None,
    description: str = "",
    samples_file: Optional[str] = None,
    num_samples: int = 4,
) -> dict[str, Any]:
  """Saves the adapters of MODEL_DIR's newest checkpoint to `adapter_dir`; returns the card."""
  samples = _sample_outputs(samples_file, num_samples) if samples_file else []
  if not isinstance(model.module, LoraModule):
    raise ConfigError(
        "export_adapter: MODEL has no adapters; pass the LoRA run's flags, including "
        "--gin_file=gin/runs/lora.gin"
    )
  step, params = restore.restore_params(model, model_dir)
  params = jax.device_get(params)
  card = adapters.card_for(
      params,
      model.module.lora_config,
      task=task,
      steps=step,
      eval_metrics=_eval_metrics(model_dir, step),
      description=description,
      sample_outputs=samples,
  )
  adapters.save(adapter_dir, params, card)
  cli.say(
      f"Saved the adapters of {model_dir} (step {step}; {len(card['targets'])} kernels, rank "
      f"{card['rank']}) to {adapter_dir}; base model {card['base_fingerprint']}"
  )
  return card


main, console_main = cli.entry_point(lambda: export_adapter(), "export_adapter")

if __name__ == "__main__":
  console_main()
