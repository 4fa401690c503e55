"""Renders one source example as a Flan prompt: question, template, options and exemplars.

Every choice (which question of the example, which phrasing, the order of the options,
which train examples serve as few-shot exemplars) is drawn from a generator seeded by
(seed, task, example key): an example renders the same wherever it lands in a shuffled or
sharded stream, and in every epoch (as in Flan, whose prompts are fixed when its data is
built); another seed gives other choices.
"""

import collections
import dataclasses
import functools
import random

from tasks.flan import templates
from tasks.flan.instructions import Example, Instance, InstructionTask, Variant, split_examples

NUM_SHOTS = 3
NUM_OPTIONS = 4  # the answer and three distractors, as in multiple-choice exams
# Draws allowed to find NUM_SHOTS exemplars; every group holds hundreds of candidates or more.
MAX_EXEMPLAR_DRAWS = 1000


@dataclasses.dataclass(frozen=True)
class Rendered:
  inputs: str
  targets: str
  template: str  # the template's name
  exemplar_keys: tuple[str, ...]  # keys of the train examples shown as exemplars


def template_fields(instance: Instance, template: templates.Template, rng: random.Random) -> dict:
  """The instance's fields plus its answer, rationale and (if the template lists them) options."""
  fields = {**instance.fields, templates.ANSWER_FIELD: instance.answer}
  if instance.rationale:
    fields[templates.RATIONALE_FIELD] = instance.rationale
  if template.with_options:
    options = [*rng.sample(instance.distractors, NUM_OPTIONS - 1), instance.answer]
    rng.shuffle(options)
    fields[templates.OPTIONS_FIELD] = templates.options_block(options)
  return fields


@functools.cache
def exemplar_pool(instruction: InstructionTask) -> dict[str, tuple[tuple[str, Instance], ...]]:
  """Group -> (key, instance) of every question of the TRAIN split in that group."""
  pool = collections.defaultdict(list)
  for example in split_examples(instruction, "train"):
    for instance in instruction.instances(example):
      pool[instance.group].append((example["key"], instance))
  return {group: tuple(members) for group, members in pool.items()}


def draw_exemplars(
    instruction: InstructionTask, key: str, instance: Instance, rng: random.Random
) -> list[tuple[str, Instance]] | None:
  """NUM_SHOTS train questions of the instance's group, of distinct examples and subjects.

  Never the example itself: neither its key nor its subject (a train example may repeat the
  text of a validation one under another key). None if the group is too small.
  """
  candidates = exemplar_pool(instruction).get(instance.group, ())
  picked, keys, subjects = [], {key}, {instance.subject}
  for _ in range(MAX_EXEMPLAR_DRAWS if candidates else 0):
    other_key, other = candidates[rng.randrange(len(candidates))]
    if other_key not in keys and other.subject not in subjects:
      picked.append((other_key, other))
      keys.add(other_key)
      subjects.add(other.subject)
      if len(picked) == NUM_SHOTS:
        return picked
  return None


def render_example(
    instruction: InstructionTask, variant: Variant, example: Example, seed: str
) -> Rendered | None:
  """The prompt of `example` in `variant`; None if the example asks nothing or lacks exemplars."""
  questions = instruction.instances(example)
  if not questions:
    return None
  rng = random.Random(f"{seed}/{instruction.name}/{variant.name}/{example['key']}")
  instance = rng.choice(questions)
  template = rng.choice(instruction.templates_of(variant))
  fields = template_fields(instance, template, rng)
  if variant.kind != "few_shot":
    return Rendered(*templates.render(template, fields), template.name, ())
  exemplars = draw_exemplars(instruction, example["key"], instance, rng)
  if exemplars is None:
    return None
  shots = [template_fields(other, template, rng) for _, other in exemplars]
  inputs, targets = templates.render_few_shot(template, shots, fields)
  return Rendered(inputs, targets, template.name, tuple(k for k, _ in exemplars))
