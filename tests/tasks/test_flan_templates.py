"""Flan templates: every field rendered, missing fields named, few-shot and options layout."""

import random
import re

import pytest

from tasks.flan import instructions, mixing, prompts, templates
from tasks.flan.templates import Template

LEFTOVER = re.compile(r"\{\w+\}")
ALL_TEMPLATES = [(i, t) for i in mixing.INSTRUCTION_TASKS for t in i.templates]


@pytest.mark.parametrize(
    "instruction,template", ALL_TEMPLATES, ids=[f"{i.name}-{t.name}" for i, t in ALL_TEMPLATES]
)
def test_every_template_renders_every_field(instruction, template):
  values = {field: f"<value of {field}>" for field in template.fields}
  inputs, targets = templates.render(template, values)
  assert not LEFTOVER.search(inputs + targets)
  for value in values.values():
    assert value in inputs + targets
  assert "<value of answer>" in targets and "<value of answer>" not in inputs
  # A real question of the task gives every field the template asks for.
  example = next(
      ex
      for ex in instructions.split_examples(instruction, "validation")
      if instruction.instances(ex)
  )
  instance = instruction.instances(example)[0]
  fields = prompts.template_fields(instance, template, random.Random(0))
  assert template.fields <= fields.keys()
  assert not LEFTOVER.search("".join(templates.render(template, fields)))


def test_names_and_variants_are_consistent():
  names = [t.name for _, t in ALL_TEMPLATES]
  assert len(names) == len(set(names))  # a template name tells its instruction task
  for instruction in mixing.INSTRUCTION_TASKS:
    for variant in instruction.variants():
      assert instruction.templates_of(variant), (instruction.name, variant)
    assert {t for v in instruction.variants() for t in instruction.templates_of(v)} == set(
        instruction.templates
    )


def test_a_missing_field_is_named():
  template = Template("greeting", "Say hello to {name} in {language}.")
  with pytest.raises(ValueError, match=r"template 'greeting' needs the field 'language'"):
    templates.render(template, {"name": "Ann", "answer": "Hallo"})
  with pytest.raises(ValueError, match=r"template 'greeting' needs the field 'answer'"):
    templates.render(template, {"name": "Ann", "language": "German"})


def test_values_are_inserted_verbatim():
  template = Template("t", "Q: {text}", "{answer}")
  assert templates.render(template, {"text": "{answer} \\1 $&", "answer": "x"}) == (
      "Q: {answer} \\1 $&",
      "x",
  )


def test_few_shot_layout_options_and_chain_of_thought():
  template = Template("t", "Q: {q}\n{options}", "{answer}")
  shot = lambda q, a: {"q": q, "answer": a, "options": templates.options_block([a, "z"])}
  inputs, targets = templates.render_few_shot(
      template, [shot("1+1", "2"), shot("2+2", "4")], shot("3+3", "6")
  )
  assert inputs == (
      "Q: 1+1\nOPTIONS:\n- 2\n- z\n2\n\n"
      "Q: 2+2\nOPTIONS:\n- 4\n- z\n4\n\n"
      "Q: 3+3\nOPTIONS:\n- 6\n- z"
  )
  assert targets == "6"
  cot = Template("c", "{q}", templates.COT_TARGETS)
  assert cot.is_cot and not cot.with_options and template.with_options
  _, target = templates.render(cot, {"q": "?", "rationale": "3 + 5 = 8.", "answer": "8"})
  assert target == "3 + 5 = 8. So the answer is 8."
  assert templates.final_answer(target) == "8"
  assert templates.final_answer("Paris") == "Paris"
