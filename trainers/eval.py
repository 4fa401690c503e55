"""`python -m trainers.eval --gin_file=... --gin.MODEL_DIR=...`: evaluate the latest checkpoint.

Prints a table of the metrics and appends them to MODEL_DIR/eval_metrics.jsonl (and
TensorBoard) at the checkpoint's step.
"""

import sys
from typing import Callable, Optional, Sequence

import gin
import jax

from trainers import cli, data, metrics_writer, partitioning, restore, seqio_evaluation
from trainers import train  # noqa: F401  (registers train(), which the run configs read here bind)
from trainers.trainer import Trainer


@gin.configurable
def evaluate(
    *,
    model=gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    eval_dataset_cfg: data.DatasetConfig = gin.REQUIRED,
    eval_steps: Optional[int] = None,
    infer_eval_dataset_cfg: Optional[data.DatasetConfig] = None,
    decoder: Optional[Callable] = None,
) -> dict[str, float]:
  """Restores the newest checkpoint of MODEL_DIR and evaluates it on `eval_dataset_cfg`
  (losses), and with `infer_eval_dataset_cfg` runs the tasks' SeqIO metrics on decodes."""
  partitioner = partitioning.Partitioner()
  trainer = Trainer(model=model, partitioner=partitioner)
  partitioner.check_batch_size(eval_dataset_cfg.batch_size)
  data.check_vocab_fits(eval_dataset_cfg, model.vocab_size)
  state = restore.restore_state(
      trainer, model_dir, data.global_batch_shapes(eval_dataset_cfg, model.FEATURE_CONVERTER)
  )
  step = int(jax.device_get(state.step))
  values = trainer.evaluate(
      state, data.take(data.batch_iterator(eval_dataset_cfg, model.FEATURE_CONVERTER), eval_steps)
  )
  task_metrics = {}
  if infer_eval_dataset_cfg is not None:
    task_metrics = seqio_evaluation.evaluate(
        model, state.params, partitioner, infer_eval_dataset_cfg, decoder
    )
    values.update(seqio_evaluation.flatten(task_metrics))
  writer = metrics_writer.MetricsWriter(model_dir, "eval")
  writer.write(step, values)
  writer.close()
  if jax.process_index() == 0:
    print(
        f"Evaluated checkpoint step {step} of {model_dir} on {eval_dataset_cfg.mixture_or_task_name}/"
        f"{eval_dataset_cfg.split}"
    )
    print(f"{'metric':<16}{'value':>12}")
    for name, value in sorted(values.items()):
      print(f"{name:<16}{value:>12.4f}")
    if task_metrics:
      print(seqio_evaluation.report(task_metrics))
  return values


def main(argv: Sequence[str]) -> int:
  return cli.run(lambda: evaluate(), argv, "eval")


def console_main() -> None:
  sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
  console_main()
