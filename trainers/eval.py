"""`python -m trainers.eval --gin_file=... --gin.MODEL_DIR=...`: evaluate the latest checkpoint.

Prints a table of the losses (and one of the tasks' SeqIO metrics, when a task has
metric_fns) and writes them to MODEL_DIR/eval_metrics.jsonl (and TensorBoard) at the
checkpoint's step, replacing that file's earlier row of the step (training's periodic eval
of the same checkpoint, or an earlier run of this command): one row per step.
"""

from typing import Callable, Mapping, Optional

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
    more_decoders: Optional[Mapping[str, Callable]] = None,
) -> dict[str, float]:
  """Restores the newest checkpoint of MODEL_DIR and evaluates it on `eval_dataset_cfg`
  (losses), and with `infer_eval_dataset_cfg` runs the tasks' SeqIO metrics on the decodes
  of `decoder` and of each of `more_decoders` (name -> decoder; reported as
  "<task>/<name>/<metric>", e.g. shallow fusion beside plain beam search)."""
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
  losses = trainer.evaluate(state, data.take(data.batches(eval_dataset_cfg, converter), eval_steps))
  task_metrics = {}
  if infer_eval_dataset_cfg is not None:
    task_metrics = data.TaskMetrics(
        model, partitioner, infer_eval_dataset_cfg, decoder, more_decoders
    )(state.params)
  metrics = data.flatten(task_metrics)  # none when no task has metric_fns
  values = {**losses, **metrics}
  writer = metrics_writer.MetricsWriter(model_dir, "eval", replace_step=step)
  writer.write(step, values)
  writer.close()
  cli.say(
      f"Evaluated checkpoint step {step} of {model_dir} on "
      f"{eval_dataset_cfg.mixture_or_task_name}/{eval_dataset_cfg.split}\n"
      f"{'metric':<16}{'value':>12}\n"
      + "\n".join(f"{name:<16}{value:>12.4f}" for name, value in sorted(losses.items()))
      + (f"\n{data.report(task_metrics)}" if metrics else "")
  )
  return values


main, console_main = cli.entry_point(lambda: evaluate(), "eval")

if __name__ == "__main__":
  console_main()
