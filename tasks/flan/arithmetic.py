"""Arithmetic word problems with worked solutions, generated deterministically.

Each problem is a short story over small numbers ("Ann has 3 apples and buys 5 more. How
many apples does Ann have now?") whose rationale spells out every operation ("Ann has 3
apples and buys 5 more. 3 + 5 = 8."), computed here as the story is written. Problems come
from a fixed seed per split; a validation problem never repeats a train problem's text.
"""

import functools
import random

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from model_zoo.errors import ConfigError
from tasks import metrics
from tasks.flan import instructions
from tasks.flan.instructions import Example, Instance, InstructionTask
from tasks.flan.templates import COT_TARGETS, Template

SPLIT_SIZES = {"train": 2000, "validation": 200}
NAMES = ("Ann", "Ben", "Carla", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas")
ITEMS = ("apples", "pencils", "stickers", "marbles", "books", "cookies", "stamps", "shells")


def _add(rng: random.Random, name: str, items: str) -> tuple[str, str, int]:
  a, b = rng.randint(2, 60), rng.randint(2, 60)
  story = f"{name} has {a} {items} and buys {b} more."
  question = f"{story} How many {items} does {name} have now?"
  return question, f"{story} {a} + {b} = {a + b}.", a + b


def _subtract(rng: random.Random, name: str, items: str) -> tuple[str, str, int]:
  b = rng.randint(2, 40)
  a = b + rng.randint(1, 40)
  story = f"{name} has {a} {items} and gives {b} of them to a friend."
  question = f"{story} How many {items} does {name} have left?"
  return question, f"{story} {a} - {b} = {a - b}.", a - b


def _multiply(rng: random.Random, name: str, items: str) -> tuple[str, str, int]:
  a, b = rng.randint(2, 12), rng.randint(2, 12)
  question = f"{name} buys {a} bags with {b} {items} in each bag. How many {items} is that?"
  return question, f"{a} bags of {b} {items} are {a} * {b} = {a * b} {items}.", a * b


def _divide(rng: random.Random, name: str, items: str) -> tuple[str, str, int]:
  share, friends = rng.randint(2, 12), rng.randint(2, 9)
  total = share * friends
  question = (
      f"{name} shares {total} {items} equally among {friends} friends. "
      f"How many {items} does each friend get?"
  )
  return question, f"Each friend gets {total} / {friends} = {share} {items}.", share


def _two_steps(rng: random.Random, name: str, items: str) -> tuple[str, str, int]:
  a, bags, per_bag = rng.randint(2, 30), rng.randint(2, 6), rng.randint(2, 10)
  bought = bags * per_bag
  gives = rng.randint(1, a + bought - 1)
  question = (
      f"{name} has {a} {items}, buys {bags} bags of {per_bag} {items} and then gives away "
      f"{gives}. How many {items} does {name} have now?"
  )
  rationale = (
      f"{name} buys {bags} * {per_bag} = {bought} {items}, so has {a} + {bought} = "
      f"{a + bought}. After giving away {gives}, {a + bought} - {gives} = {a + bought - gives}."
  )
  return question, rationale, a + bought - gives


FORMS = (_add, _subtract, _multiply, _divide, _two_steps)


@functools.cache
def problems(split: str) -> tuple[dict[str, str], ...]:
  """The problems of `split` as the source yields them: key, question, rationale, answer."""
  if split not in SPLIT_SIZES:
    raise ConfigError(f"arithmetic problems have splits {tuple(SPLIT_SIZES)}; got {split!r}")
  seen = {p["question"] for p in problems("train")} if split != "train" else set()
  rng = random.Random(f"podzoo-flan-arithmetic/{split}")
  out = []
  while len(out) < SPLIT_SIZES[split]:
    question, rationale, answer = rng.choice(FORMS)(rng, rng.choice(NAMES), rng.choice(ITEMS))
    if question in seen:
      continue
    seen.add(question)
    key = f"arithmetic-{split}-{len(out):05d}"
    out.append({"key": key, "question": question, "rationale": rationale, "answer": str(answer)})
  return tuple(out)


def _read_split(split: str) -> tf.data.Dataset:
  rows = problems(split)
  return tf.data.Dataset.from_tensor_slices({name: [p[name] for p in rows] for name in rows[0]})


@functools.cache
def source() -> seqio.FunctionDataSource:
  return instructions.shuffling_source(_read_split, tuple(SPLIT_SIZES))


def distractors(answer: int) -> tuple[str, ...]:
  """Near misses (off by one, two or ten, double, half): wrong options a careless solver picks."""
  near = {answer - 10, answer - 2, answer - 1, answer + 1, answer + 2, answer + 10, 2 * answer}
  near.add(answer // 2)
  return tuple(str(n) for n in sorted(near - {answer}) if n > 0)


def instances(example: Example) -> list[Instance]:
  answer = example["answer"]
  return [
      Instance(
          {"question": example["question"]},
          answer,
          subject=example["question"],
          distractors=distractors(int(answer)),
          rationale=example["rationale"],
      )
  ]


ARITHMETIC = InstructionTask(
    name="arithmetic",
    source=source,
    instances=instances,
    templates=(
        Template("question", "{question}"),
        Template("solve", "Solve this word problem: {question}"),
        Template("question_answer", "Question: {question}\nAnswer:"),
        Template("question_options", "{question}\n{options}"),
        Template("solve_options", "Solve this word problem: {question}\n{options}"),
        Template("step_by_step", "{question} Let's think step by step.", COT_TARGETS),
        Template("reason_first", "Answer with your reasoning first. {question}", COT_TARGETS),
    ),
    metric_fns=(metrics.accuracy,),
)
