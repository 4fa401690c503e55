"""What an instruction task is: how a source example becomes questions with answers.

An `InstructionTask` reads a SeqIO data source (the parallel corpus' TFDS dataset, or
generated problems) and turns each of its examples into one or more `Instance`s: the
template fields of one question, its answer, and what options and exemplars may go with
it. One SeqIO task is registered per (instruction task, `Variant`): a template kind and
whether the phrasing lists answer options, e.g. `flan_langid_few_shot_options`.
"""

import dataclasses
import functools
from typing import Callable, Mapping, Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from tasks.flan import templates

Example = Mapping[str, str]  # a source example's string features, e.g. {"key": .., "en": ..}
SOURCE_SHUFFLE_BUFFER = 8192  # more than any split: a full shuffle


@dataclasses.dataclass(frozen=True)
class Instance:
  """One question made from an example, with everything a template may ask for."""

  fields: Mapping[str, str]  # the question's template fields (not answer/options/rationale)
  answer: str
  subject: str  # what is asked about; an exemplar never has the example's subject
  distractors: tuple[str, ...] = ()  # wrong answers that answer options are drawn from
  rationale: str = ""  # worked solution, for chain-of-thought templates
  group: str = ""  # few-shot exemplars come from the example's group (e.g. "de-en")


@dataclasses.dataclass(frozen=True)
class Variant:
  """A template kind (see templates.KINDS), with or without answer options."""

  kind: str
  with_options: bool

  @property
  def name(self) -> str:
    return self.kind + ("_options" if self.with_options else "")


@dataclasses.dataclass(frozen=True)
class InstructionTask:
  """A source, how its examples become instances, and the phrasings to ask them with."""

  name: str
  source: Callable[[], seqio.DataSource]
  instances: Callable[[Example], Sequence[Instance]]  # [] where the example has no question
  templates: tuple[templates.Template, ...]
  metric_fns: tuple[Callable, ...]

  def variants(self) -> tuple[Variant, ...]:
    """The variants the templates allow: few-shot reuses the direct (not CoT) phrasings."""
    direct = sorted({t.with_options for t in self.templates if not t.is_cot})
    cot = sorted({t.with_options for t in self.templates if t.is_cot})
    return (
        *(Variant(kind, o) for kind in ("zero_shot", "few_shot") for o in direct),
        *(Variant("cot", o) for o in cot),
    )

  def templates_of(self, variant: Variant) -> tuple[templates.Template, ...]:
    return tuple(
        t
        for t in self.templates
        if t.is_cot == (variant.kind == "cot") and t.with_options == variant.with_options
    )


def shuffling_source(
    read_split: Callable[[str], tf.data.Dataset], splits: Sequence[str]
) -> seqio.FunctionDataSource:
  """A source over `read_split(split)` that shuffles whole examples itself when asked to.

  SeqIO shuffles a task after its preprocessors, where a full buffer would render and
  tokenize thousands of prompts per task before the first batch; raw examples are cheap
  to shuffle. No example count is declared, so SeqIO does not keep the first epoch in
  memory, and every epoch comes in a new order.
  """

  def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
    dataset = read_split(split)
    return dataset.shuffle(SOURCE_SHUFFLE_BUFFER, seed=seed) if shuffle_files else dataset

  return seqio.FunctionDataSource(dataset_fn, splits=tuple(splits))


def task_name(instruction: InstructionTask, variant: Variant) -> str:
  """The SeqIO task of `instruction` in `variant`, e.g. `flan_translation_zero_shot`."""
  return f"flan_{instruction.name}_{variant.name}"


def split_examples(instruction: InstructionTask, split: str) -> tuple[dict[str, str], ...]:
  """Every example of the source's `split`, in source order, read through SeqIO.

  The few-shot pool and the mixing rates come from exactly what the tasks read.
  """
  return source_examples(instruction.source(), split)


@functools.cache
def source_examples(source: seqio.DataSource, split: str) -> tuple[dict[str, str], ...]:
  """Every example of a source's `split`, read once (tasks share the corpus' source)."""
  examples = []
  for batch in source.get_dataset(split, shuffle=False).batch(4096).as_numpy_iterator():
    for i in range(len(batch["key"])):
      examples.append({name: values[i].decode("utf-8") for name, values in batch.items()})
  return tuple(examples)


def num_examples(instruction: InstructionTask, split: str) -> int:
  """How many examples of `split` give at least one question."""
  return sum(bool(instruction.instances(ex)) for ex in split_examples(instruction, split))
