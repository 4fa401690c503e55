"""Flan mixing: examples-proportional with a per-task cap, spread over template kinds.

As in Flan (Chung et al., 2022; Longpre et al., 2023), an instruction task is sampled in
proportion to its number of train examples, capped so that the largest tasks do not
crowd out the rest: size = min(train examples, cap). Its share is then split over its
template kinds by the template-type rates, renormalised over the kinds the task has, and
a kind's share equally over its variants with and without answer options:

    rate(task, variant) = size(task) * rate[kind] / sum(rate[k] for k in kinds(task))
                          / number of variants of that kind

A cap of 1 makes every task's size 1: uniform mixing over the instruction tasks (each
task's share still split over its kinds as above).
"""

import math
from typing import Mapping, Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio

from model_zoo.errors import ConfigError
from tasks.flan import arithmetic, corpus_tasks, instructions, templates

# The instruction tasks of every Flan mixture here.
INSTRUCTION_TASKS = (
    corpus_tasks.TRANSLATION,
    corpus_tasks.LANGUAGE_ID,
    corpus_tasks.COUNTRY_CODE,
    arithmetic.ARITHMETIC,
)
MIXTURE_NAME = "flan_podzoo"
# Caps translation and language ID (~6.4k messages each) to about the size of the
# generated arithmetic set, so that neither dominates; country codes (~390) are not capped.
DEFAULT_CAP = 3000
# Mostly zero-shot, with a good share of few-shot prompts (Flan 2022 found training on
# both helps either way of prompting) and some chain of thought where a task has it.
DEFAULT_TEMPLATE_RATES = {"zero_shot": 0.5, "few_shot": 0.3, "cot": 0.2}


def check_rates(cap: float, template_rates: Mapping[str, float]) -> None:
  if not (cap > 0 and math.isfinite(cap)):
    raise ConfigError(
        f"the Flan mixing cap is {cap!r}; it must be a positive number of examples (Flan "
        f"uses the size of a mid-sized task, e.g. the default {DEFAULT_CAP})"
    )
  if not template_rates:
    raise ConfigError(f"template_rates is empty; give a rate to one or more of {templates.KINDS}")
  for kind, rate in template_rates.items():
    if kind not in templates.KINDS:
      raise ConfigError(
          f"template_rates has the unknown template kind {kind!r}; the kinds are {templates.KINDS}"
      )
    if not (rate > 0 and math.isfinite(rate)):
      raise ConfigError(
          f"the template rate of {kind!r} is {rate!r}; rates must be positive and finite "
          "(leave a kind out of template_rates to leave its tasks out of the mixture)"
      )


def check_instruction_tasks(instruction_tasks: Sequence[instructions.InstructionTask]) -> None:
  """A mixture needs one or more of the registered instruction tasks (INSTRUCTION_TASKS)."""
  known = [t.name for t in INSTRUCTION_TASKS]
  if not instruction_tasks:
    raise ConfigError(f"instruction_tasks is empty; give one or more of {known}")
  unknown = [getattr(t, "name", t) for t in instruction_tasks if t not in INSTRUCTION_TASKS]
  if unknown:
    raise ConfigError(
        f"instruction_tasks has {unknown}, which are not Flan instruction tasks here; give a "
        f"subset of mixing.INSTRUCTION_TASKS (the tasks {known}), whose SeqIO tasks "
        "`import tasks.flan.tasks` registers"
    )


def mixing_rates(
    cap: float = DEFAULT_CAP,
    template_rates: Mapping[str, float] = DEFAULT_TEMPLATE_RATES,
    instruction_tasks: Sequence[instructions.InstructionTask] = INSTRUCTION_TASKS,
) -> dict[str, float]:
  """SeqIO task name -> rate (in capped examples), by the formula in the module docstring.

  Kinds left out of `template_rates` are left out of the mixture, and so are the instruction
  tasks left out of `instruction_tasks` (e.g. a task family held out for zero-shot evaluation).
  """
  check_rates(cap, template_rates)
  check_instruction_tasks(instruction_tasks)
  rates = {}
  for instruction in instruction_tasks:
    variants = [v for v in instruction.variants() if v.kind in template_rates]
    kinds = {v.kind for v in variants}
    size = min(instructions.num_examples(instruction, "train"), cap)
    for variant in variants:
      per_kind = sum(v.kind == variant.kind for v in variants)
      share = template_rates[variant.kind] / sum(template_rates[k] for k in kinds) / per_kind
      rates[instructions.task_name(instruction, variant)] = size * share
  return rates


def register_flan_mixture(
    name: str,
    cap: float = DEFAULT_CAP,
    template_rates: Mapping[str, float] = DEFAULT_TEMPLATE_RATES,
    instruction_tasks: Sequence[instructions.InstructionTask] = INSTRUCTION_TASKS,
) -> seqio.Mixture:
  """Registers mixture `name` of the Flan tasks at `mixing_rates(cap, template_rates,
  instruction_tasks)`.

  The tasks must be registered first: `import tasks.flan.tasks` does it.
  """
  rates = mixing_rates(cap, template_rates, instruction_tasks)
  missing = sorted(set(rates) - set(seqio.TaskRegistry.names()))
  if missing:
    raise ConfigError(
        f"mixture {name!r} needs the Flan tasks {missing}, which are not registered; "
        "`import tasks.flan.tasks` first"
    )
  return seqio.MixtureRegistry.add(name, list(rates.items()))
