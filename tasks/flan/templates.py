"""Flan-style prompt templates: named fields, answer options, few-shot exemplars, chain of thought.

A `Template` is one phrasing of an instruction (`Translate "{text}" to {target_language}.`)
and of its answer (`{answer}`). Flan (Chung et al., 2022; Longpre et al., 2023) trains on
many phrasings of every task, in several formats, so that a model follows an instruction
however it is worded. The formats (template kinds) here are:
- zero_shot: the phrasing alone;
- few_shot: k solved exemplars before the example, each rendered with the same phrasing
  (inputs, a line break, targets) and separated by blank lines;
- cot (chain of thought): a phrasing whose target is a worked rationale, then
  "So the answer is X.".
A phrasing with an `{options}` field lists the answer options ("OPTIONS:\n- a\n- b").
"""

import dataclasses
import re
from typing import Mapping, Sequence

from model_zoo.errors import ConfigError

KINDS = ("zero_shot", "few_shot", "cot")
FIELD = re.compile(r"\{(\w+)\}")
EXEMPLAR_SEPARATOR = "\n\n"
OPTIONS_HEADER = "OPTIONS:"
ANSWER_FIELD, OPTIONS_FIELD, RATIONALE_FIELD = "answer", "options", "rationale"
COT_PREFIX = "So the answer is "
COT_TARGETS = "{rationale} " + COT_PREFIX + "{answer}."


@dataclasses.dataclass(frozen=True)
class Template:
  """One phrasing: `inputs` and `targets` patterns whose `{field}`s are filled when rendering."""

  name: str
  inputs: str
  targets: str = "{answer}"

  @property
  def fields(self) -> frozenset[str]:
    return frozenset(FIELD.findall(self.inputs + self.targets))

  @property
  def with_options(self) -> bool:
    return OPTIONS_FIELD in self.fields

  @property
  def is_cot(self) -> bool:
    """Whether the target works the answer out (a rationale first), for the "cot" kind."""
    return RATIONALE_FIELD in self.fields


def fill(pattern: str, fields: Mapping[str, str], template_name: str) -> str:
  """`pattern` with every `{field}` replaced by its value (values are inserted verbatim)."""

  def value(match: re.Match) -> str:
    name = match.group(1)
    if name not in fields:
      raise ConfigError(
          f"template {template_name!r} needs the field {name!r}, which is missing; it was "
          f"given {sorted(fields)}. Pass a value for {name!r} or drop it from the pattern."
      )
    return fields[name]

  return FIELD.sub(value, pattern)


def render(template: Template, fields: Mapping[str, str]) -> tuple[str, str]:
  """(inputs, targets) of `template` filled with `fields`."""
  return fill(template.inputs, fields, template.name), fill(template.targets, fields, template.name)


def options_block(options: Sequence[str]) -> str:
  """Flan's option list: "OPTIONS:" then one "- option" line each."""
  return "\n".join([OPTIONS_HEADER, *(f"- {option}" for option in options)])


def answer_options(inputs: str) -> list[str]:
  """The options of a rendered prompt's last option list (the question's: a few-shot
  prompt's exemplars come first); the inverse of `options_block`, for rank classification."""
  lines = inputs.split("\n")
  header = len(lines) - 1 - lines[::-1].index(OPTIONS_HEADER)
  options = []
  for line in lines[header + 1 :]:
    if not line.startswith("- "):
      break
    options.append(line[2:])
  return options


def render_few_shot(
    template: Template, exemplars: Sequence[Mapping[str, str]], fields: Mapping[str, str]
) -> tuple[str, str]:
  """(inputs, targets): the solved exemplars, then the example's inputs; its targets alone."""
  shots = ["\n".join(render(template, exemplar)) for exemplar in exemplars]
  inputs, targets = render(template, fields)
  return EXEMPLAR_SEPARATOR.join([*shots, inputs]), targets


def final_answer(text: str) -> str:
  """The answer of a chain-of-thought target ("... So the answer is 8." -> "8"), else `text`.

  Metrics compare answers, not rationales: a model may reason differently and be right.
  """
  _, found, answer = text.rpartition(COT_PREFIX)
  return answer.removesuffix(".") if found else text
