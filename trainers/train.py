"""`python -m trainers.train --gin_file=... [--gin.NAME=VALUE ...]`: train, evaluate, checkpoint.

Resumes from the newest readable checkpoint in MODEL_DIR (params, optimizer state and the
data position, so the resumed run sees the batches an uninterrupted run would), writes the
operative config to MODEL_DIR/config.gin, metrics to TensorBoard and JSONL, and stops with
a clear message, keeping the last good checkpoint, if the loss becomes NaN or Inf.
"""
import math
import os
import sys
from typing import Iterator, Mapping, Optional, Sequence

import gin
import jax

from model_zoo import metrics as metrics_lib
from trainers import checkpoints, cli, data, gin_utils, metrics_writer, partitioning, text_prediction
from trainers.errors import TrainingDivergedError
from trainers.trainer import Trainer


def _batch_shapes(first_batch: dict, global_batch_size: int) -> dict[str, tuple[int, ...]]:
  return {k: (global_batch_size,) + v.shape[1:] for k, v in first_batch.items()}


def _check_finite(values: dict[str, float], step: int, checkpointer: checkpoints.Checkpointer,
                  params_finite: bool = True) -> None:
  """Stops a diverged run before a bad state can overwrite the last good checkpoint."""
  if math.isfinite(values.get("loss", 0.0)) and params_finite:
    return
  last = checkpointer.latest_step()
  kept = f"the last good checkpoint (step {last}) is kept" if last is not None else "no checkpoint was written"
  raise TrainingDivergedError(
      f"Loss became {values.get('loss')} (or parameters became NaN/Inf) by step {step}; stopping ({kept} in {checkpointer.directory}). "
      "Lower the learning rate (e.g. --gin.constant_schedule.learning_rate), enable gradient "
      "clipping (with_gradient_clipping.max_norm) or raise Model z_loss, then resume.")


def evaluate(trainer: Trainer, state, cfg: data.DatasetConfig, max_batches: Optional[int]) -> dict[str, float]:
  batches = data.batch_iterator(cfg, trainer.model.FEATURE_CONVERTER)
  if max_batches is not None:
    batches = (b for _, b in zip(range(max_batches), batches))
  return trainer.evaluate(state, batches)


@gin.configurable
def train(*, model=gin.REQUIRED, model_dir: str = gin.REQUIRED, train_steps: int = gin.REQUIRED,
          train_dataset_cfg: data.DatasetConfig = gin.REQUIRED,
          eval_dataset_cfg: Optional[data.DatasetConfig] = None,
          eval_period: int = 100, eval_steps: Optional[int] = None, log_period: int = 10,
          eval_baselines: Optional[Mapping[str, float]] = None,
          predict_prompts: Sequence[str] = (), predict_length: int = 64) -> dict[str, float]:
  """Trains `model` for `train_steps` steps in total (counting any resumed ones).

  `eval_baselines` (name -> nats per token) are printed beside each eval's cross entropy,
  e.g. the unigram entropy of the corpus that a useful LM must beat.
  """
  os.makedirs(model_dir, exist_ok=True)
  if jax.process_index() == 0:
    gin_utils.write_operative_config(model_dir)
  partitioner = partitioning.Partitioner()
  trainer = Trainer(model=model, partitioner=partitioner)
  partitioner.check_batch_size(train_dataset_cfg.batch_size)
  data.check_vocab_fits(train_dataset_cfg, model.vocab_size)
  feature_converter = model.FEATURE_CONVERTER

  first = next(data.batch_iterator(train_dataset_cfg, feature_converter))
  shapes = _batch_shapes(first, train_dataset_cfg.batch_size)
  checkpointer = checkpoints.Checkpointer(os.path.join(model_dir, "checkpoints"))
  abstract, shardings = trainer.abstract_state(shapes)
  restored = checkpointer.restore_latest(abstract)
  if restored is None:
    state, position = trainer.init_state(shapes, shardings), {"train_batches": 0}
  else:
    state, position = restored
    print(f"Restored checkpoint at step {int(state.step)} from {checkpointer.directory}; resuming "
          f"(data position: {position['train_batches']} batches).", flush=True)

  train_writer = metrics_writer.MetricsWriter(model_dir, "train")
  eval_writer = metrics_writer.MetricsWriter(model_dir, "eval")
  step = int(jax.device_get(state.step))
  batches: Iterator[dict] = data.batch_iterator(train_dataset_cfg, feature_converter,
                                               start_batch=position["train_batches"])
  progress = metrics_writer.Progress(train_steps, step)
  pending = {}
  train_values = {}
  while step < train_steps:
    batch = next(batches)
    state, step_metrics = trainer.train_step(state, batch)
    pending = metrics_lib.merge(pending, step_metrics)
    step += 1
    position = {"train_batches": position["train_batches"] + 1}
    last = step == train_steps
    if step % log_period == 0 or last or checkpointer.should_save(step):
      train_values = metrics_lib.values(pending)
      _check_finite(train_values, step, checkpointer)
      tokens = float(jax.device_get(pending["loss"].count))  # real (weighted) target tokens, all hosts
      steps_per_s, tokens_per_s, step_time = progress.rates(step, tokens)
      train_writer.write(step, {**train_values, "steps_per_second": steps_per_s,
                                "tokens_per_second": tokens_per_s, "step_time_s": step_time})
      if jax.process_index() == 0:
        print(progress.line(step, train_values["loss"], steps_per_s, tokens_per_s), flush=True)
      pending = {}
    if checkpointer.should_save(step) or last:
      _check_finite(train_values, step, checkpointer, trainer.params_are_finite(state))
      checkpointer.save(state, position)
    if eval_dataset_cfg is not None and (step % eval_period == 0 or last):
      eval_values = evaluate(trainer, state, eval_dataset_cfg, eval_steps)
      eval_writer.write(step, eval_values)
      if jax.process_index() == 0:
        print(f"eval step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(eval_values.items())), flush=True)
        for name, value in (eval_baselines or {}).items():
          print(f"  eval cross_entropy {eval_values['cross_entropy']:.4f} nats/token vs {name} {value:.4f}", flush=True)
      train_values = {**train_values, **{f"eval_{k}": v for k, v in eval_values.items()}}
  if step >= train_steps and not train_values:
    print(f"MODEL_DIR already holds step {step} >= TRAIN_STEPS={train_steps}; nothing to train.", flush=True)
  if predict_prompts:
    vocab = data.vocabulary(train_dataset_cfg)
    outputs = text_prediction.continue_prompts(model, state.params, partitioner, vocab, predict_prompts, predict_length)
    if jax.process_index() == 0:
      for prompt, output in zip(predict_prompts, outputs):
        print(f"PROMPT: {prompt}\n  -> {output}", flush=True)
  checkpointer.close()
  train_writer.close()
  eval_writer.close()
  return train_values


def main(argv: Sequence[str]) -> int:
  return cli.run(lambda: train(), argv, "train")


def console_main() -> None:
  sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
  console_main()
