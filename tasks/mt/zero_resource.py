"""Tasks for translating languages that have monolingual text only ("zero-resource" languages).

What tasks/mt/tasks.py lacks for such a language (Bapna et al., 2022, "Building Machine
Translation Systems for the Next Thousand Languages"):

- `add_lines_mass_task`: MASS over lines given as they were collected, not over the corpus,
  e.g. a language's text with the English its catalogs left untranslated (dirty), or what
  the LangID filters kept of it;
- `add_table_back_translation_task`: back-translation whose reverse model ran once,
  beforehand, into a table (text -> translation), so a training run neither loads a second
  model nor decodes the same texts again every epoch;
- `register_mixture_with_stand_ins`: a temperature mixture in which a task stands in for
  a corpus task at that task's rate (dirty and filtered MASS sampled as often as the
  corpus's own MASS task of the language, so two runs differ only in the lines read);
- `register_spec`: all of the above from a JSON file, for a task module that a command line
  imports (MIXTURE_OR_TASK_MODULE); tools/mt_experiment.py writes one.
"""

import json
import os
from typing import Any, Mapping, Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from model_zoo.errors import ConfigError
from tasks.mt import back_translation
from tasks.mt import tasks as mt_tasks


def lines_source(lang: str, lines: Mapping[str, Sequence[str]]) -> seqio.FunctionDataSource:
  """A source shaped like the corpus's TFDS records (one text field named after `lang`) over
  `lines` (split -> texts), so the corpus tasks' preprocessors read it unchanged."""
  empty = [split for split, texts in lines.items() if not texts]
  if not lines or empty:
    raise ConfigError(
        f"a line source for {lang!r} needs at least one line in each split; got splits "
        f"{sorted(lines)} with {empty or 'none'} empty"
    )

  def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
    del shuffle_files, seed  # one in-memory "file"; the task's shuffle buffer shuffles
    return tf.data.Dataset.from_tensor_slices({lang: tf.constant(list(lines[split]), tf.string)})

  return seqio.FunctionDataSource(
      dataset_fn, splits=list(lines), num_input_examples={s: len(t) for s, t in lines.items()}
  )


def add_lines_mass_task(name: str, lang: str, lines: Mapping[str, Sequence[str]]) -> seqio.Task:
  """Registers `name`: the corpus's MASS task of `lang` (`mt_tasks.add_mass_task`) reading
  `lines` (split -> texts) instead of the corpus. Raises seqio's ValueError if `name` exists."""
  corpus_task = mt_tasks.add_mass_task(lang)
  task = corpus_task.replace(name=name, source=lines_source(lang, lines))
  seqio.TaskRegistry.add_provider(name, task)
  return task


def table_predict_fn(table: Mapping[str, str]) -> back_translation.PredictFn:
  """A predict_fn that looks each text up in `table` (text -> its translation)."""

  def predict_fn(texts: Sequence[str]) -> list[str]:
    missing = [text for text in texts if text not in table]
    if missing:
      raise ConfigError(
          f"{len(missing)} texts (e.g. {missing[0]!r}) have no translation in the "
          "back-translation table; make the table from every text of the split the task reads"
      )
    return [table[text] for text in texts]

  return predict_fn


def add_table_back_translation_task(
    name: str, table: Mapping[str, str], source: str, target: str
) -> seqio.Task:
  """Registers `name`: `mt_tasks.register_back_translation_task` over `target`'s corpus text,
  its `source` side looked up in `table` (target text -> source translation). Only the
  splits whose every text the table holds can be read (the train split, typically)."""
  return mt_tasks.register_back_translation_task(name, table_predict_fn(table), source, target)


def register_mixture_with_stand_ins(
    name: str,
    temperature: float,
    tasks: Sequence[str],
    stand_ins: Mapping[str, str] | None = None,
) -> seqio.Mixture:
  """Registers `name`: `tasks` at `mt_tasks.mixing_rates(temperature, tasks)`, except that each
  task `t` in `stand_ins` is replaced by the registered task `stand_ins[t]` at `t`'s rate."""
  stand_ins = dict(stand_ins or {})
  unknown = sorted(set(stand_ins) - set(tasks))
  if unknown:
    raise ConfigError(
        f"mixture {name!r}: stand-ins replace tasks of the mixture; {unknown} are not among "
        f"its tasks {list(tasks)}"
    )
  rates = mt_tasks.mixing_rates(temperature, tasks)
  return seqio.MixtureRegistry.add(
      name, [(stand_ins.get(task, task), rate) for task, rate in rates.items()]
  )


def register_spec(path: str | os.PathLike) -> None:
  """Registers the tasks and mixtures a JSON file describes, in this order:

  {"lines_mass_tasks": [{"name", "lang", "lines": {split: [text, ...]}}],
   "back_translation_tasks": [{"name", "source", "target", "table": {text: translation}}],
   "mixtures": [{"name", "temperature", "tasks": [...], "stand_ins": {task: task}}]}
  """
  with open(path, encoding="utf-8") as f:
    spec: dict[str, Any] = json.load(f)
  for task in spec.get("lines_mass_tasks", []):
    add_lines_mass_task(task["name"], task["lang"], task["lines"])
  for task in spec.get("back_translation_tasks", []):
    add_table_back_translation_task(task["name"], task["table"], task["source"], task["target"])
  for mixture in spec.get("mixtures", []):
    register_mixture_with_stand_ins(
        mixture["name"], mixture["temperature"], mixture["tasks"], mixture.get("stand_ins")
    )
