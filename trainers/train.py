"""`python -m trainers.train --gin_file=... [--gin.NAME=VALUE ...]`: train, evaluate, checkpoint.

Resumes from the newest readable checkpoint in MODEL_DIR (params, optimizer state and the
input pipeline's saved position, so the resumed run sees the batches an uninterrupted run
would without reading the earlier ones again), writes the
operative config to MODEL_DIR/config.gin once the run is accepted (an earlier, different
one is kept as config-<step>.gin), metrics to TensorBoard and JSONL, and stops with
a clear message, keeping the last good checkpoint, if the loss becomes NaN or Inf.

`train()` runs in phases: restore-or-init, the step loop (logging and checkpoints), a
periodic eval and, at the end, continuations of a few prompts and a summary of where the
run's outputs are. Settings are checked before any data is read or anything compiled.
"""

import logging
import math
import os
import time
from typing import Callable, Iterator, Mapping, Optional, Sequence

import gin
import jax

from model_zoo import metrics as metrics_lib
from model_zoo.errors import ConfigError
from trainers import (
    checkpoints,
    cli,
    gin_utils,
    metrics_writer,
    optimizers,
    param_references,
    partitioning,
    preemption,
    run_checks,
    run_lock,
    text_prediction,
)
from trainers.dataset_config import DatasetConfig
from trainers.errors import TrainingDivergedError
from trainers.initial_checkpoint import InitialCheckpoint
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


def _restore_or_init(
    trainer: Trainer,
    checkpointer: checkpoints.Checkpointer,
    shapes,
    initial: Optional[InitialCheckpoint],
):
  """The run's own newest checkpoint; else a fresh state, its parameters from `initial`."""
  abstract, shardings = trainer.abstract_state(shapes)
  restored = checkpointer.restore_latest(abstract)
  if restored is None:
    state = trainer.init_state(shapes, shardings)
    if initial is not None:
      params, report = initial.load(abstract.params, state.params)
      _check_frozen(trainer, abstract.params, report.references)
      cli.say(report.text(initial.state_dir()))
      state = state.replace(params=params)
      checkpointer.references = report.references
    return state, {"train_batches": 0}
  state, position = restored
  _check_frozen(trainer, abstract.params, checkpointer.references)
  cli.say(
      f"Restored checkpoint at step {int(state.step)} from {checkpointer.directory}; resuming "
      f"(data position: {position['train_batches']} batches)."
  )
  return state, position


def _check_frozen(trainer: Trainer, params, references) -> None:
  """Parameters kept by reference are never saved, so the optimizer must not change them."""
  trained = param_references.flat(optimizers.trained_mask(trainer.optimizer, params))
  moving = sorted(path for path in references if trained[path])
  if moving:
    raise ConfigError(
        f"{', '.join(moving)} is kept by reference to the initial checkpoint (InitialCheckpoint."
        "by_reference), so never saved, but the optimizer trains it. Freeze it "
        "(Trainer.optimizer = @trainable_only() with it in trainable_only.frozen_patterns), or "
        "drop it from by_reference (and use a new MODEL_DIR)."
    )


def _train_batches(
    data, checkpointer: checkpoints.Checkpointer, cfg: DatasetConfig, converter, step, position
) -> Iterator[dict]:
  """This process's training batches from the restored data position: the input pipeline's
  saved state where the checkpoint has one this run can use, else the data replayed to it."""
  batches = iter(data.batches(cfg, converter))
  done = position["train_batches"]
  why_not = checkpointer.restore_data_iterator(step, batches) if done else None
  if why_not:
    cli.say(f"Replaying {done} batches to reach the data position of step {step} ({why_not}).")
    batches = iter(data.batches(cfg, converter, start_batch=done))
  return batches


class _PeriodicEval:
  """Eval losses on a split whose pipeline is built once, plus (optionally) SeqIO metrics."""

  def __init__(
      self,
      data,
      trainer: Trainer,
      model_dir: str,
      cfg: DatasetConfig,
      steps: Optional[int],
      baselines: Optional[Mapping[str, float]],
      infer_cfg: Optional[DatasetConfig],
      decoder: Optional[Callable],
      resume_step: Optional[int] = None,
  ):
    self.data, self.trainer = data, trainer
    self.batches = data.batches(cfg, trainer.model.FEATURE_CONVERTER_CLS)
    self.steps, self.baselines = steps, baselines or {}
    self.task_metrics = None
    if infer_cfg is not None:
      self.task_metrics = data.TaskMetrics(trainer.model, trainer.partitioner, infer_cfg, decoder)
    self.writer = metrics_writer.MetricsWriter(model_dir, "eval", resume_step=resume_step)

  def __call__(self, state, step: int) -> dict[str, float]:
    values = self.trainer.evaluate(state, self.data.take(self.batches, self.steps))
    cli.say(f"eval step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items())))
    for name, value in self.baselines.items():
      cli.say(
          f"  eval cross_entropy {values['cross_entropy']:.4f} nats/token vs {name} {value:.4f}"
      )
    if self.task_metrics is not None:
      task_metrics = self.task_metrics(state.params)
      flat = self.data.flatten(task_metrics)  # empty when no task has metric_fns
      values.update(flat)
      if flat:
        cli.say(self.data.report(task_metrics))
    self.writer.write(step, values)
    return values


class _InputWait:
  """Seconds spent in `next(batches)` since the last `take()`: what the input pipeline costs.

  Steps dispatch asynchronously, so a step's own time may surface anywhere; only the `next()`
  call is timed, and its sum is shared out over the log period's wall time, not step time.
  """

  def __init__(self):
    self._seconds = 0.0

  def next(self, batches: Iterator[dict]) -> Optional[dict]:
    start = time.perf_counter()
    batch = next(batches, None)
    self._seconds += time.perf_counter() - start
    return batch

  def take(self) -> float:
    seconds, self._seconds = self._seconds, 0.0
    return seconds


def _log(
    step: int,
    pending: dict,
    input_wait_s: float,
    progress: metrics_writer.Progress,
    writer: metrics_writer.MetricsWriter,
    checkpointer: checkpoints.Checkpointer,
    unit: str = "tokens",
) -> dict[str, float]:
  """Writes and prints the metrics accumulated since the last log; stops a diverged run.

  `unit`: what the model's `num_target_tokens` counts (a SPAE model's: images), for the
  printed rate; the JSONL keeps the key `tokens_per_second` for every model."""
  results = metrics_lib.values(pending)
  steps_per_s, elapsed = progress.rate(step)
  tokens_per_s = float(jax.device_get(pending["target_tokens"].total)) / elapsed  # all hosts
  input_wait = input_wait_s / elapsed
  _stop_if_diverged(results["loss"], True, step, checkpointer)
  writer.write(
      step,
      {
          **results,
          "steps_per_second": steps_per_s,
          "tokens_per_second": tokens_per_s,
          "step_time_s": 1.0 / max(steps_per_s, 1e-9),
          "input_wait_fraction": input_wait,
      },
  )
  progress.report(
      step,
      f"loss {results['loss']:.4f}",
      f"{tokens_per_s:,.0f} {unit}/s",
      f"input wait {input_wait:.1%}",
      rate=steps_per_s,
  )
  return results


def _step_loop(
    trainer: Trainer,
    state,
    position: dict,
    batches: Iterator[dict],
    checkpointer: checkpoints.Checkpointer,
    writer: metrics_writer.MetricsWriter,
    train_steps: int,
    log_period: int,
    periodic_eval: Optional[_PeriodicEval],
    eval_period: int,
    preempt: preemption.Watch,
    lock: run_lock.RunLock,
):
  """Steps to `train_steps`, logging, checkpointing (with `batches`' position) and evaluating;
  returns (state, metrics).

  On a preemption notice it saves after the current step and raises `Preempted`.
  """
  step = int(jax.device_get(state.step))
  progress = metrics_writer.Progress("step {done}{of}", "steps", train_steps, step)
  pending, results, input_wait = {}, {}, _InputWait()
  while step < train_steps:
    batch = input_wait.next(batches)
    if batch is None:
      raise ConfigError(
          f"The training data ran out after {position['train_batches']} batches; train "
          "DatasetConfig.num_epochs should be None (repeat) for training."
      )
    state, step_metrics = trainer.train_step(state, batch)
    pending = metrics_lib.merge(pending, step_metrics)
    step, position = step + 1, {"train_batches": position["train_batches"] + 1}
    lock.heartbeat()  # rate-limited inside; before this step's checkpoint, if any
    last, preempted = step == train_steps, preempt.should_stop(step)
    save = checkpointer.should_save(step) or last or preempted
    if step % log_period == 0 or save:
      unit = getattr(trainer.model, "THROUGHPUT_UNIT", "tokens")
      results = _log(step, pending, input_wait.take(), progress, writer, checkpointer, unit)
      pending = {}
    if save:
      _stop_if_diverged(results["loss"], trainer.params_are_finite(state), step, checkpointer)
      checkpointer.save(state, position, batches)
    if preempted:
      raise preemption.Preempted(step, checkpointer.directory)
    if periodic_eval is not None and (step % eval_period == 0 or last):
      results.update({f"eval_{k}": v for k, v in periodic_eval(state, step).items()})
  return state, results


def _decode_prompts(
    data, trainer: Trainer, params, cfg: DatasetConfig, prompts, length, sampler
) -> None:
  """Prints greedy continuations of `prompts` (and seeded samples): what the model learned.

  Greedy text of a small model soon repeats itself; a sample shows the rest of what it knows.
  """
  decoders = {"greedy": None} | ({"sampled": sampler} if sampler is not None else {})
  vocab = data.vocabulary(cfg)
  outputs = {
      name: text_prediction.continue_prompts(
          trainer.model, params, trainer.partitioner, vocab, prompts, length, decoder
      )
      for name, decoder in decoders.items()
  }
  for i, prompt in enumerate(prompts):
    cli.say(f"PROMPT: {prompt}")
    for name in decoders:
      cli.say(f"  {name:>7} -> {outputs[name][i]}")


def _check_settings(model_dir, train_steps, eval_on, eval_period, eval_steps, log_period, length):
  """Refuses a setting that would fail later (e.g. EVAL_PERIOD=0 after the first step)."""
  run_checks.model_dir(model_dir)
  run_checks.positive_int(train_steps, "TRAIN_STEPS")
  run_checks.positive_int(log_period, "train.log_period")
  run_checks.positive_int(length, "train.predict_length")
  if eval_on:
    run_checks.positive_int(
        eval_period, "EVAL_PERIOD", hint="to evaluate never, set --gin.train.eval_dataset_cfg=None"
    )
    run_checks.positive_int(eval_steps, "EVAL_STEPS", none_means="the whole validation split")


def _summary(model_dir: str, steps: Sequence[int], results: Mapping[str, float]) -> str:
  """Where the run's outputs are and what to run next."""
  loss = f"; last train loss {results['loss']:.4f}" if "loss" in results else ""
  eval_loss = results.get("eval_cross_entropy")
  eval_part = f", eval cross entropy {eval_loss:.4f}" if eval_loss is not None else ""
  return (
      f"Done{loss}{eval_part}.\n"
      f"  MODEL_DIR {model_dir}:\n"
      f"    checkpoints/ (steps {', '.join(map(str, steps)) or 'none'})\n"
      "    config.gin (this run's full config)\n"
      "    train_metrics.jsonl, eval_metrics.jsonl; TensorBoard: "
      f"tensorboard --logdir {model_dir}\n"
      "  Next: python -m trainers.eval / trainers.infer with this run's --gin_file flags plus "
      "gin/runs/eval.gin or gin/runs/infer.gin."
  )


@gin.configurable
def train(
    *,
    model=gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    train_steps: int = gin.REQUIRED,
    train_dataset_cfg: DatasetConfig = gin.REQUIRED,
    eval_dataset_cfg: Optional[DatasetConfig] = None,
    eval_period: int = 100,
    eval_steps: Optional[int] = None,
    log_period: int = 10,
    eval_baselines: Optional[Mapping[str, float]] = None,
    infer_eval_dataset_cfg: Optional[DatasetConfig] = None,
    eval_decoder: Optional[Callable] = None,
    predict_prompts: Sequence[str] = (),
    predict_length: int = 64,
    predict_sampler: Optional[Callable] = None,
    initial_checkpoint: Optional[InitialCheckpoint] = None,
) -> dict[str, float]:
  """Trains `model` for `train_steps` steps in total (counting any resumed ones).

  `eval_baselines` (name -> nats per token) are printed beside each eval's cross entropy,
  e.g. the unigram entropy of the corpus that a useful LM must beat. With
  `infer_eval_dataset_cfg`, each eval also decodes that split with `eval_decoder` (default
  greedy) and runs the tasks' SeqIO metric functions. At the end, `predict_prompts` are
  continued greedily (and with `predict_sampler`, e.g. a seeded top-p `Sampling`, too).
  `initial_checkpoint` (gin/runs/finetune.gin) gives a fresh run its parameters.
  Returns the last train (and `eval_`-prefixed) metrics.
  """
  _check_settings(
      model_dir,
      train_steps,
      eval_dataset_cfg is not None,
      eval_period,
      eval_steps,
      log_period,
      predict_length,
  )
  partitioner = partitioning.Partitioner()
  trainer = Trainer(model=model, partitioner=partitioner)
  partitioner.check_batch_size(train_dataset_cfg.batch_size)
  warning = run_checks.warmup_warning(trainer.schedule, train_steps)
  if warning:
    logging.warning(warning)
  from trainers import data  # pylint: disable=g-import-not-at-top  (SeqIO: when a run starts)

  os.makedirs(model_dir, exist_ok=True)
  data.check_vocab_fits(train_dataset_cfg, model.vocab_size)
  converter = model.FEATURE_CONVERTER_CLS
  with run_lock.held(model_dir) as lock:
    checkpointer = checkpoints.Checkpointer(os.path.join(model_dir, "checkpoints"))
    state, position = _restore_or_init(
        trainer,
        checkpointer,
        data.global_batch_shapes(train_dataset_cfg, converter),
        initial_checkpoint,
    )
    if int(jax.device_get(state.step)) >= train_steps:
      cli.say(
          f"MODEL_DIR already holds step {int(state.step)} >= TRAIN_STEPS={train_steps}; "
          "nothing to train."
      )
    elif jax.process_index() == 0:  # an accepted run: its config, keeping the previous one
      gin_utils.write_operative_config(model_dir, int(jax.device_get(state.step)))
    periodic_eval = None
    if eval_dataset_cfg is not None:
      periodic_eval = _PeriodicEval(
          data,
          trainer,
          model_dir,
          eval_dataset_cfg,
          eval_steps,
          eval_baselines,
          infer_eval_dataset_cfg,
          eval_decoder,
          int(jax.device_get(state.step)),
      )
    writer = metrics_writer.MetricsWriter(model_dir, "train", int(jax.device_get(state.step)))
    try:
      with preemption.Watch() as preempt:
        state, results = _step_loop(
            trainer,
            state,
            position,
            _train_batches(
                data,
                checkpointer,
                train_dataset_cfg,
                converter,
                int(jax.device_get(state.step)),
                position,
            ),
            checkpointer,
            writer,
            train_steps,
            log_period,
            periodic_eval,
            eval_period,
            preempt,
            lock,
        )
    finally:
      steps = checkpointer.manager.all_steps()
      for closable in (checkpointer, writer) + ((periodic_eval.writer,) if periodic_eval else ()):
        closable.close()
  if predict_prompts:
    _decode_prompts(
        data,
        trainer,
        state.params,
        train_dataset_cfg,
        predict_prompts,
        predict_length,
        predict_sampler,
    )
  cli.say(_summary(model_dir, sorted(steps), results))
  return results


main, console_main = cli.entry_point(lambda: train(), "train")

if __name__ == "__main__":
  console_main()
