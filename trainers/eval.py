"""`python -m trainers.eval --gin_file=... --gin.MODEL_DIR=...`: evaluate the latest checkpoint.

Prints a table of the metrics and appends them to MODEL_DIR/eval_metrics.jsonl (and
TensorBoard) at the checkpoint's step.
"""

from typing import Callable, Optional

import gin
import jax

from trainers import cli, metrics_writer, partitioning, restore
from trainers import train  # noqa: F401  (registers train(), which the run configs read here bind)
from trainers.dataset_config import DatasetConfig
from trainers.trainer import Trainer


@gin.configurable
def evaluate(
    *,
    model=gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    eval_dataset_cfg: DatasetConfig = gin.REQUIRED,
    eval_steps: Optional[int] = None,
    infer_eval_dataset_cfg: Optional[DatasetConfig] = None,
    decoder: Optional[Callable] = None,
) -> dict[str, float]:
  """Restores the newest checkpoint of MODEL_DIR and evaluates it on `eval_dataset_cfg`
  (losses), and with `infer_eval_dataset_cfg` runs the tasks' SeqIO metrics on decodes."""
  from trainers import data  # pylint: disable=g-import-not-at-top  (SeqIO: when a run starts)

  partitioner = partitioning.Partitioner()
  trainer = Trainer(model=model, partitioner=partitioner)
  partitioner.check_batch_size(eval_dataset_cfg.batch_size)
  data.check_vocab_fits(eval_dataset_cfg, model.vocab_size)
  converter = model.FEATURE_CONVERTER_CLS
  state = restore.restore_state(
      trainer, model_dir, data.global_batch_shapes(eval_dataset_cfg, converter)
  )
  step = int(jax.device_get(state.step))
  values = trainer.evaluate(state, data.take(data.batches(eval_dataset_cfg, converter), eval_steps))
  task_metrics = {}
  if infer_eval_dataset_cfg is not None:
    task_metrics = data.TaskMetrics(model, partitioner, infer_eval_dataset_cfg, decoder)(
        state.params
    )
    values.update(data.flatten(task_metrics))
  writer = metrics_writer.MetricsWriter(model_dir, "eval")
  writer.write(step, values)
  writer.close()
  cli.say(
      f"Evaluated checkpoint step {step} of {model_dir} on "
      f"{eval_dataset_cfg.mixture_or_task_name}/{eval_dataset_cfg.split}\n"
      f"{'metric':<16}{'value':>12}\n"
      + "\n".join(f"{name:<16}{value:>12.4f}" for name, value in sorted(values.items()))
      + (f"\n{data.report(task_metrics)}" if task_metrics else "")
  )
  return values


main, console_main = cli.entry_point(lambda: evaluate(), "eval")

if __name__ == "__main__":
  console_main()
