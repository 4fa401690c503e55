"""The task module of tools/flan_experiment.py: its runs' Flan mixtures and bounded eval tasks.

The experiment's command lines (`python -m trainers.train`, `python -m trainers.eval`) import
this through a three-line module the experiment writes to its --out_dir (MIXTURE_OR_TASK_MODULE),
which calls `register` with the experiment's flags. Kept apart from the experiment's command
line so that a trainer importing it, after its gin config is locked, imports no tool that
registers gin configurables, and only the task code it needs.

  * training mixtures `flanexp_<run>`: tasks.flan.mixing.register_flan_mixture over the run's
    families, cap and template rates (`plan`);
  * eval tasks: for each Flan task scored, a copy reading only its first `eval_examples`
    validation examples (in the source's order). A task without answer options,
    `flanexp_<task>`, is scored by its own metrics on greedy decodes and by
    `mean_log_likelihood` (log p(target | prompt), nats per example); one with options,
    `flanexp_rank_<task>`, has a row per option (the option and EOS as the target) and is
    scored by `rank_accuracy` (%): an example is right when its answer's log-likelihood is
    the highest of its options'. The base's copies (`flanexp_base_...`) put UL2's S mode
    token before each prompt, the format it was pre-trained to read;
  * eval mixtures `flanexp_eval_<run>` (and `flanexp_eval_base`) of the eval tasks of the
    families the run is scored on.
"""

import dataclasses
import functools
from typing import Any, Mapping, NamedTuple, Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import numpy as np
import seqio
import tensorflow as tf

from tasks import metrics
from tasks.flan import arithmetic, instructions, mixing, templates
from tasks.flan import tasks as flan_tasks  # noqa: F401  (registers the Flan tasks)
from tasks.pretraining import vocabulary

FAMILIES = {task.name: task for task in mixing.INSTRUCTION_TASKS}
ABLATION_FAMILY = arithmetic.ARITHMETIC.name  # the one family with chain-of-thought templates
PARTS = ("held_out", "templates", "mixing")
BASE, DEFAULT, UNIFORM = "base", "default", "uniform"
TEMPLATE_RUNS = {
    "zero_shot_only": {"zero_shot": 0.5},
    "zero_and_few_shot": {"zero_shot": 0.5, "few_shot": 0.3},
    DEFAULT: mixing.DEFAULT_TEMPLATE_RATES,
}
UNIFORM_CAP = 1  # every instruction task's size min(n, 1) = 1: uniform over the families
RANK_METRIC = "rank_accuracy"
PREFIX = "flanexp_"


@dataclasses.dataclass(frozen=True)
class FineTune:
  """One instruction-tuning run: the families it trains on, its mixing, the families scored."""

  families: tuple[str, ...]
  evaluated: tuple[str, ...]
  cap: float = mixing.DEFAULT_CAP
  template_rates: Mapping[str, float] = dataclasses.field(
      default_factory=lambda: dict(mixing.DEFAULT_TEMPLATE_RATES)
  )

  def rates(self) -> dict[str, float]:
    """Its mixture: Flan task -> rate (tasks.flan.mixing.mixing_rates)."""
    tasks = [FAMILIES[f] for f in self.families]
    return mixing.mixing_rates(self.cap, self.template_rates, tasks)


def plan(families: Sequence[str], parts: Sequence[str]) -> dict[str, FineTune]:
  """The tuned models the `parts` need (module docstring), by run name; a run two parts share
  (`default`) is trained once and scored on what both need."""
  families = tuple(families)
  runs: dict[str, FineTune] = {}

  def add(name: str, run: FineTune) -> None:
    if name in runs:
      run = dataclasses.replace(
          run, evaluated=tuple(dict.fromkeys(runs[name].evaluated + run.evaluated))
      )
    runs[name] = run

  if "held_out" in parts:
    for held_out in families:
      add(f"without_{held_out}", FineTune(tuple(f for f in families if f != held_out), (held_out,)))
  if "templates" in parts:
    for name, rates in TEMPLATE_RUNS.items():
      add(name, FineTune(families, (ABLATION_FAMILY,), template_rates=dict(rates)))
  if "mixing" in parts:
    add(DEFAULT, FineTune(families, families))
    add(UNIFORM, FineTune(families, families, cap=UNIFORM_CAP))
  return runs


def base_families(runs: Mapping[str, FineTune]) -> tuple[str, ...]:
  """What the base is scored on: every family some tuned model is scored on."""
  evaluated = {f for run in runs.values() for f in run.evaluated}
  return tuple(f for f in FAMILIES if f in evaluated)


# --- evaluation tasks ------------------------------------------------------------------------
class EvalTask(NamedTuple):
  """A bounded copy of a Flan task (module docstring), for the base or for tuned models."""

  name: str
  flan_task: str
  rank: bool  # rank classification over the answer options, not greedy decodes


def eval_tasks(family: str, base: bool) -> list[EvalTask]:
  """The eval tasks that score `family`, one per variant: rank classification where the
  variant lists answer options, greedy decodes (and the answer's likelihood) where not.
  Decoding is the costly part, and an options variant's decodes would repeat its plain twin's
  question."""
  instruction = FAMILIES[family]
  who = f"{PREFIX}{'base_' if base else ''}"
  tasks = []
  for variant in instruction.variants():
    flan_task = instructions.task_name(instruction, variant)
    rank = variant.with_options
    tasks.append(EvalTask(f"{who}{'rank_' if rank else ''}{flan_task}", flan_task, rank))
  return tasks


def first(dataset: tf.data.Dataset, *, n: int) -> tf.data.Dataset:
  """The first `n` examples: the same cheap subset for every model."""
  return dataset.take(n)


def after_mode_token(dataset: tf.data.Dataset, *, token: int) -> tf.data.Dataset:
  """The prompt's tokens after a UL2 mode token, as the base was pre-trained to read them."""

  def prepend(example):
    inputs = example["inputs"]
    return {**example, "inputs": tf.concat([tf.constant([token], inputs.dtype), inputs], 0)}

  return dataset.map(prepend)


def one_row_per_option(dataset: tf.data.Dataset, *, vocab: seqio.Vocabulary) -> tf.data.Dataset:
  """Each example (its options listed in its prompt) -> one row per option: the same inputs,
  the option + EOS as targets, the example's "idx" and whether it is the answer."""

  def options_of(inputs: bytes) -> np.ndarray:
    options = templates.answer_options(inputs.decode("utf-8"))
    return np.array([o.encode("utf-8") for o in options], dtype=object)

  def rows(index, example):
    options = tf.ensure_shape(
        tf.numpy_function(options_of, [example["inputs_pretokenized"]], tf.string, stateful=False),
        [None],
    )
    n = tf.size(options)
    return tf.data.Dataset.from_tensor_slices(
        {
            "inputs": tf.repeat(example["inputs"][tf.newaxis], n, axis=0),
            "targets_pretokenized": options,
            "idx": tf.fill([n], tf.cast(index, tf.int32)),
            "is_correct": tf.equal(options, example["targets_pretokenized"]),
        }
    )

  def tokenize(row):
    eos = tf.constant([vocab.eos_id], tf.int32)
    return {**row, "targets": tf.concat([vocab.encode_tf(row["targets_pretokenized"]), eos], 0)}

  return dataset.enumerate().flat_map(rows).map(tokenize)


def option_of(target: str, example: Mapping[str, Any], is_target: bool) -> tuple[int, bool]:
  """Postprocessor of a rank task's targets: (its example's index, whether it is the answer)."""
  del target, is_target  # only targets are postprocessed: rank tasks have score metrics only
  return int(example["idx"]), bool(example["is_correct"])


def rank_accuracy(targets: Sequence[tuple[int, bool]], scores: Sequence[float]) -> dict:
  """Rank classification, in %: an example is right when its answer scores highest."""
  best: dict[int, tuple[float, bool]] = {}
  for (index, correct), score in zip(targets, scores):
    if index not in best or score > best[index][0]:
      best[index] = (score, correct)
  return {RANK_METRIC: 100.0 * float(np.mean([correct for _, correct in best.values()]))}


def register_eval_task(eval_task: EvalTask, eval_examples: int, base: bool) -> None:
  """The first `eval_examples` examples of the Flan task (module docstring)."""
  if eval_task.name in seqio.TaskRegistry.names():
    return
  task = seqio.get_mixture_or_task(eval_task.flan_task)
  preprocessors = [*task.preprocessors, functools.partial(first, n=eval_examples)]
  if base:
    preprocessors.append(functools.partial(after_mode_token, token=vocabulary.mode_id("S")))
  if eval_task.rank:
    vocab = task.output_features["targets"].vocabulary
    preprocessors.append(functools.partial(one_row_per_option, vocab=vocab))
  seqio.TaskRegistry.add(
      eval_task.name,
      source=task.source,
      preprocessors=preprocessors,
      output_features=task.output_features,
      postprocess_fn=option_of if eval_task.rank else task.postprocessor,
      metric_fns=(
          [rank_accuracy] if eval_task.rank else [*task.metric_fns, metrics.mean_log_likelihood]
      ),
  )


def mixture_name(run: str) -> str:
  return f"{PREFIX}{run}"


def eval_mixture_name(run: str) -> str:
  return f"{PREFIX}eval_{run}"


def register(families: Sequence[str], parts: Sequence[str], eval_examples: int) -> None:
  """Registers every run's training mixture and every model's eval mixture: what the task
  module written to --out_dir does. Registering again is harmless."""
  runs = plan(families, parts)
  scored = {name: run.evaluated for name, run in runs.items()}
  scored[BASE] = base_families(runs)
  for name, run in runs.items():
    if mixture_name(name) not in seqio.MixtureRegistry.names():
      tasks = [FAMILIES[f] for f in run.families]
      mixing.register_flan_mixture(mixture_name(name), run.cap, run.template_rates, tasks)
  for name, evaluated in scored.items():
    tasks = [task for family in evaluated for task in eval_tasks(family, base=name == BASE)]
    for task in tasks:
      register_eval_task(task, eval_examples, base=name == BASE)
    if eval_mixture_name(name) not in seqio.MixtureRegistry.names():
      seqio.MixtureRegistry.add(eval_mixture_name(name), [(task.name, 1.0) for task in tasks])
