"""`python -m trainers.train --gin_file=... [--gin.NAME=VALUE ...]`: train, evaluate, checkpoint.

Resumes from the newest readable checkpoint in MODEL_DIR (params, optimizer state and the
data position, so the resumed run sees the batches an uninterrupted run would), writes the
operative config to MODEL_DIR/config.gin, metrics to TensorBoard and JSONL, and stops with
a clear message, keeping the last good checkpoint, if the loss becomes NaN or Inf.
"""

import math
import os
import sys
from typing import Callable, Iterator, Mapping, Optional, Sequence

import gin
import jax

from model_zoo import metrics as metrics_lib
from trainers import (
    checkpoints,
    cli,
    data,
    gin_utils,
    metrics_writer,
    partitioning,
    seqio_evaluation,
    text_prediction,
)
from trainers.errors import TrainingDivergedError
from trainers.trainer import Trainer


def _stop_if_diverged(
    loss: float, params_finite: bool, step: int, checkpointer: checkpoints.Checkpointer
) -> None:
  """Stops a diverged run before a bad state can overwrite the last good checkpoint."""
  if math.isfinite(loss) and params_finite:
    return
  what = f"The loss became {loss}" if not math.isfinite(loss) else "Parameters became NaN/Inf"
  last = checkpointer.latest_step()
  kept = (
      f"the last good checkpoint (step {last}) is kept"
      if last is not None
      else "no checkpoint had been written"
  )
  raise TrainingDivergedError(
      f"{what} by step {step}; stopping ({kept} in {checkpointer.directory}). Lower the learning "
      "rate (LEARNING_RATE_SCHEDULE), clip gradients (with_gradient_clipping.max_norm) or raise "
      "the model's z_loss, then run again to resume."
  )


def _restore_or_init(trainer: Trainer, checkpointer: checkpoints.Checkpointer, shapes):
  abstract, shardings = trainer.abstract_state(shapes)
  restored = checkpointer.restore_latest(abstract)
  if restored is None:
    return trainer.init_state(shapes, shardings), {"train_batches": 0}
  state, position = restored
  cli.say(
      f"Restored checkpoint at step {int(state.step)} from {checkpointer.directory}; resuming "
      f"(data position: {position['train_batches']} batches)."
  )
  return state, position


def _next_batch(batches: Iterator[dict], position: dict) -> dict:
  batch = next(batches, None)
  if batch is None:
    raise ValueError(
        f"The training data ran out after {position['train_batches']} batches; train "
        "DatasetConfig.num_epochs should be None (repeat) for training."
    )
  return batch


def _report_eval(
    step: int, values: dict[str, float], baselines: Optional[Mapping[str, float]]
) -> None:
  cli.say(f"eval step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items())))
  for name, value in (baselines or {}).items():
    cli.say(f"  eval cross_entropy {values['cross_entropy']:.4f} nats/token vs {name} {value:.4f}")


@gin.configurable
def train(
    *,
    model=gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    train_steps: int = gin.REQUIRED,
    train_dataset_cfg: data.DatasetConfig = gin.REQUIRED,
    eval_dataset_cfg: Optional[data.DatasetConfig] = None,
    eval_period: int = 100,
    eval_steps: Optional[int] = None,
    log_period: int = 10,
    eval_baselines: Optional[Mapping[str, float]] = None,
    infer_eval_dataset_cfg: Optional[data.DatasetConfig] = None,
    eval_decoder: Optional[Callable] = None,
    predict_prompts: Sequence[str] = (),
    predict_length: int = 64,
) -> dict[str, float]:
  """Trains `model` for `train_steps` steps in total (counting any resumed ones).

  `eval_baselines` (name -> nats per token) are printed beside each eval's cross entropy,
  e.g. the unigram entropy of the corpus that a useful LM must beat. With
  `infer_eval_dataset_cfg`, each eval also decodes that split with `eval_decoder` (default
  greedy) and runs the tasks' SeqIO metric functions. Returns the last train (and
  `eval_`-prefixed) metrics.
  """
  os.makedirs(model_dir, exist_ok=True)
  if jax.process_index() == 0:
    gin_utils.write_operative_config(model_dir)
  partitioner = partitioning.Partitioner()
  trainer = Trainer(model=model, partitioner=partitioner)
  partitioner.check_batch_size(train_dataset_cfg.batch_size)
  data.check_vocab_fits(train_dataset_cfg, model.vocab_size)
  converter = model.FEATURE_CONVERTER
  checkpointer = checkpoints.Checkpointer(os.path.join(model_dir, "checkpoints"))
  state, position = _restore_or_init(
      trainer, checkpointer, data.global_batch_shapes(train_dataset_cfg, converter)
  )
  step = int(jax.device_get(state.step))
  if step >= train_steps:
    cli.say(f"MODEL_DIR already holds step {step} >= TRAIN_STEPS={train_steps}; nothing to train.")
  train_writer = metrics_writer.MetricsWriter(model_dir, "train")
  eval_writer = metrics_writer.MetricsWriter(model_dir, "eval")
  batches = data.batch_iterator(train_dataset_cfg, converter, start_batch=position["train_batches"])
  progress = metrics_writer.Progress(train_steps, step)
  pending, results = {}, {}
  while step < train_steps:
    batch = _next_batch(batches, position)
    state, step_metrics = trainer.train_step(state, batch)
    pending = metrics_lib.merge(pending, step_metrics)
    step, position = step + 1, {"train_batches": position["train_batches"] + 1}
    last, save = step == train_steps, checkpointer.should_save(step) or step == train_steps
    if step % log_period == 0 or save:
      results = metrics_lib.values(pending)
      tokens = float(jax.device_get(pending["loss"].count))  # real target tokens, all hosts
      steps_per_s, tokens_per_s, step_time = progress.rates(step, tokens)
      pending = {}
      _stop_if_diverged(results["loss"], True, step, checkpointer)
      train_writer.write(
          step,
          {
              **results,
              "steps_per_second": steps_per_s,
              "tokens_per_second": tokens_per_s,
              "step_time_s": step_time,
          },
      )
      cli.say(progress.line(step, results["loss"], steps_per_s, tokens_per_s))
    if save:
      _stop_if_diverged(results["loss"], trainer.params_are_finite(state), step, checkpointer)
      checkpointer.save(state, position)
    if eval_dataset_cfg is not None and (step % eval_period == 0 or last):
      eval_values = trainer.evaluate(
          state, data.take(data.batch_iterator(eval_dataset_cfg, converter), eval_steps)
      )
      _report_eval(step, eval_values, eval_baselines)
      if infer_eval_dataset_cfg is not None:
        task_metrics = seqio_evaluation.evaluate(
            model, state.params, partitioner, infer_eval_dataset_cfg, eval_decoder
        )
        eval_values.update(seqio_evaluation.flatten(task_metrics))
        cli.say(seqio_evaluation.report(task_metrics))
      eval_writer.write(step, eval_values)
      results.update({f"eval_{k}": v for k, v in eval_values.items()})
  if predict_prompts:
    outputs = text_prediction.continue_prompts(
        model,
        state.params,
        partitioner,
        data.vocabulary(train_dataset_cfg),
        predict_prompts,
        predict_length,
    )
    for prompt, output in zip(predict_prompts, outputs):
      cli.say(f"PROMPT: {prompt}\n  -> {output}")
  for closable in (checkpointer, train_writer, eval_writer):
    closable.close()
  return results


def main(argv: Sequence[str]) -> int:
  return cli.run(lambda: train(), argv, "train")


def console_main() -> None:
  sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
  console_main()
