"""Flan tasks: right answers, exemplars, options, CoT, length limits, seeds, rates, shapes."""

import functools
import itertools
import json
import math
import pathlib
import re
from typing import Callable

import gin
import numpy as np
import pytest
import scipy.stats
import seqio
import tensorflow as tf

from model_zoo.errors import ConfigError
from tasks import evaluation, pipeline
from tasks.flan import arithmetic, instructions, iso_codes, mixing, prompts, templates
from tasks.flan import tasks as flan_tasks
from tasks.parallel import corpus, vocabulary
from tests.tasks import gin_fragments

LENGTHS = {"inputs": 384, "targets": 128}  # as gin/mixtures/flan.gin
ISO_3166 = pathlib.Path("/usr/share/iso-codes/json/iso_3166-1.json")
# Written out by hand: the old 20, and a variant of each kind (region, modifier, inverted ISO name).
LANGUAGE_NAMES = {
    "en": "English", "de": "German", "es": "Spanish", "fr": "French", "it": "Italian",
    "pt": "Portuguese", "nl": "Dutch", "pl": "Polish", "ru": "Russian", "uk": "Ukrainian",
    "cs": "Czech", "sv": "Swedish", "da": "Danish", "fi": "Finnish", "hu": "Hungarian",
    "tr": "Turkish", "el": "Greek", "ro": "Romanian", "ca": "Catalan", "id": "Indonesian",
    "pt_BR": "Portuguese (Brazil)", "zh_TW": "Chinese (Taiwan)", "zh_HK": "Chinese (Hong Kong)",
    "sr@latin": "Serbian (Latin)", "sr@ije": "Serbian (Ijekavian)",
    "ca@valencia": "Catalan (Valencian)", "nb": "Norwegian Bokmål", "nds": "Low German",
}  # fmt: skip
LANGUAGE_CODES = {name: code for code, name in iso_codes.language_names().items()}
VARIANTS = {  # what each instruction task's templates allow, written out by hand
    "translation": ["zero_shot", "few_shot"],
    "langid": ["zero_shot", "zero_shot_options", "few_shot", "few_shot_options"],
    "country_code": ["zero_shot", "zero_shot_options", "few_shot", "few_shot_options"],
    "arithmetic": ["zero_shot", "zero_shot_options", "few_shot", "few_shot_options", "cot"],
}
TASKS = [f"flan_{name}_{variant}" for name, variants in VARIANTS.items() for variant in variants]
FEW_SHOT_TASKS = [name for name in TASKS if "few_shot" in name]
INSTRUCTIONS = {i.name: i for i in mixing.INSTRUCTION_TASKS}
TEMPLATES = {t.name: (i.name, t) for i in mixing.INSTRUCTION_TASKS for t in i.templates}
RECORDS = {split: {r.key: r for r in corpus.split_records(split)} for split in corpus.SPLITS}
# Arithmetic stories, parsed here on their own: (question regex, the answer from its numbers).
STORIES = [
    (r"\w+ has (\d+) (\w+) and buys (\d+) more\. How many \2 does \w+ have now\?", "a + b"),
    (r"\w+ has (\d+) (\w+) and gives (\d+) of them to a friend\. How many \2 does", "a - b"),
    (r"\w+ buys (\d+) bags with (\d+) (\w+) in each bag\. How many \3 is that\?", "a * b"),
    (r"\w+ shares (\d+) (\w+) equally among (\d+) friends\. How many \2 does each", "a / b"),
    (r"\w+ has (\d+) (\w+), buys (\d+) bags of (\d+) \2 and then gives away (\d+)\.", "a+b*c-d"),
]


def solve(question: str) -> int:
  """The answer of an arithmetic question, from the numbers its story states."""
  solved = []
  for regex, formula in STORIES:
    if match := re.match(regex, question):
      numbers = [int(g) for g in match.groups() if g.isdigit()]
      value = eval(formula, dict(zip("abcd", numbers)))  # noqa: S307  (our own formulas)
      assert value == int(value) > 0, question
      solved.append(int(value))
  assert len(solved) == 1, question
  return solved[0]


@functools.cache
def languages_writing() -> dict[str, set[str]]:
  """Text -> languages that write it, from the corpus records (not the TFDS copy)."""
  writers = {}
  for records in RECORDS.values():
    for record in records.values():
      for lang, text in record.texts.items():
        writers.setdefault(text, set()).add(lang)
  return writers


@functools.cache
def country_codes() -> dict[str, str]:
  entries = json.loads(ISO_3166.read_text())["3166-1"]
  return {
      corpus.clean(entry[field]): entry["alpha_2"]
      for entry in entries
      for field in ("name", "official_name", "common_name")
      if field in entry
  }


def langid_subject_ok(record: corpus.Record, lang: str) -> bool:
  """Only this language writes the text; English only where every language translated it."""
  text = record.texts.get(lang)
  full = len(record.texts) == len(corpus.LANGUAGES)
  return text is not None and languages_writing()[text] == {lang} and (lang != "en" or full)


@functools.cache
def problems_by_key(split: str) -> dict[str, dict[str, str]]:
  return {p["key"]: p for p in arithmetic.problems(split)}


def check_answer(instruction: str, split: str, key: str, fields: dict, answer: str):
  """The question is about source example `key` of `split`, and `answer` is right.

  Returns a translation's direction: (the languages writing its text, the target language).
  """
  if instruction == "arithmetic":
    problem = problems_by_key(split)[key]
    assert fields["question"] == problem["question"] and answer == str(solve(problem["question"]))
    return None
  record = RECORDS[split][key]
  if instruction == "translation":
    target = LANGUAGE_CODES[fields["target_language"]]
    # Some phrasings leave the source language unsaid: any language writing the text.
    sources = {lang for lang, text in record.texts.items() if text == fields["text"]}
    if "source_language" in fields:
      sources &= {LANGUAGE_CODES[fields["source_language"]]}
    assert record.texts[target] == answer and sources and target not in sources
    assert "en" in sources or target == "en"
    return sources, target
  if instruction == "langid":
    assert record.texts[LANGUAGE_CODES[answer]] == fields["text"]
    assert langid_subject_ok(record, LANGUAGE_CODES[answer])
  else:
    assert fields["country"] in record.texts.values() and record.domain == "iso_3166-1"
    assert answer == country_codes()[record.texts["en"]]
  return None


def regex(pattern: str) -> str:
  """A template pattern as a regex with a named group per field (options: the whole block)."""
  parts = re.split(r"\{(\w+)\}", pattern)
  out = ""
  for i, part in enumerate(parts):
    if i % 2 == 0:
      out += re.escape(part)
    elif part == "options":
      out += r"(?P<options>OPTIONS:(?:\n- [^\n]+)+)"
    else:
      out += rf"(?P<{part}>[^\n]*?)"
  return out


def parse(template: templates.Template, text: str, *, with_targets: bool = False) -> dict:
  pattern = template.inputs + ("\n" + template.targets if with_targets else "")
  match = re.fullmatch(regex(pattern), text)
  assert match, (template.name, text)
  return match.groupdict()


def check_options(fields: dict, answer: str) -> None:
  if "options" not in fields:
    return
  options = fields["options"].split("\n- ")[1:]
  assert len(options) == len(set(options)) == prompts.NUM_OPTIONS
  assert options.count(answer) == 1


@functools.cache
def rendered(
    task: str, split: str, seed: int = 0, shuffle: bool = False, take: int = -1
) -> tuple[dict, ...]:
  ds = seqio.get_mixture_or_task(task).get_dataset(LENGTHS, split, shuffle=shuffle, seed=seed)
  ds = ds.take(take)
  return tuple(
      {k: v.decode() if isinstance(v, bytes) else v for k, v in ex.items()}
      for ex in ds.as_numpy_iterator()
  )


def variant_of(task: str) -> tuple[str, str]:
  name, variant = next((n, task.removeprefix(f"flan_{n}_")) for n in VARIANTS if f"_{n}_" in task)
  return name, variant


def test_registered_tasks_and_language_names():
  flan = sorted(n for n in seqio.TaskRegistry.names() if n.startswith("flan_"))
  assert flan == sorted(TASKS)
  names = iso_codes.language_names()
  assert list(names) == list(corpus.LANGUAGES) and len(set(names.values())) == len(names)
  assert {lang: names[lang] for lang in LANGUAGE_NAMES} == LANGUAGE_NAMES


@pytest.mark.parametrize(
    "languages,modifiers,error",
    [
        (("en", "xx"), iso_codes.MODIFIER_NAMES, r"'xx'.*ISO 639-2 .*no code 'xx'; update"),
        (("en", "pt_QQ"), iso_codes.MODIFIER_NAMES, r"'pt_QQ'.*no region 'QQ'; update"),
        (("en", "pt@foo"), iso_codes.MODIFIER_NAMES, r"modifier @foo; add it to .*MODIFIER_NAMES"),
        (("en", "sr@latin", "sr@lat"), {"latin": "Latin", "lat": "Latin"}, "share an English name"),
    ],
)
def test_a_language_without_a_name_of_its_own_is_a_clear_error(languages, modifiers, error):
  try:
    with pytest.MonkeyPatch.context() as patch:
      patch.setattr(corpus, "LANGUAGES", languages)
      patch.setattr(iso_codes, "MODIFIER_NAMES", modifiers)
      iso_codes.language_names.cache_clear()
      with pytest.raises(ConfigError, match=error):
        iso_codes.language_names()
  finally:
    iso_codes.language_names.cache_clear()


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_prompts_ask_real_questions_with_right_answers_and_fit(task):
  """Every validation example: template filled, answer right, options, CoT, length limits."""
  name, variant = variant_of(task)
  examples = rendered(task, "validation")
  kind = variant.removesuffix("_options")
  limits = flan_tasks.LENGTH_LIMITS[kind]
  # The limits drop at most 1% of the examples that ask something.
  assert len(examples) >= 0.99 * instructions.num_examples(INSTRUCTIONS[name], "validation")
  for ex in examples:
    assert len(ex["inputs"]) <= limits["inputs"] and len(ex["targets"]) <= limits["targets"]
    assert ex["targets"][-1] == 1 and 1 not in ex["inputs"]  # EOS on targets only
    owner, template = TEMPLATES[ex["template"]]
    assert owner == name and template.with_options == variant.endswith("_options")
    assert template.is_cot == (kind == "cot")
    question = ex["inputs_pretokenized"].split(templates.EXEMPLAR_SEPARATOR)[-1]
    fields = parse(template, question)
    target_fields = parse(
        templates.Template("targets", template.targets), ex["targets_pretokenized"]
    )
    answer = target_fields["answer"]
    check_answer(name, "validation", ex["key"], fields, answer)
    check_options(fields, answer)
    if kind == "cot":
      assert ex["targets_pretokenized"].endswith(f" So the answer is {solve(fields['question'])}.")
      assert flan_tasks.cot_answer(ex["targets_pretokenized"], is_target=True) == answer
    assert not re.search(r"\{\w+\}", ex["inputs_pretokenized"] + ex["targets_pretokenized"])


@pytest.mark.slow
@pytest.mark.parametrize("task", FEW_SHOT_TASKS)
@pytest.mark.parametrize("split", corpus.SPLITS)
def test_few_shot_exemplars_are_other_train_examples(task, split):
  name, _ = variant_of(task)
  subject = {"translation": "text", "langid": "text", "country_code": "country"}.get(
      name, "question"
  )
  train_keys = RECORDS["train"].keys() | {p["key"] for p in arithmetic.problems("train")}
  # Validation: all (as the test above renders them); train: the first 150.
  examples = rendered(task, split, take=150 if split == "train" else -1)
  for ex in examples:
    _, template = TEMPLATES[ex["template"]]
    keys = ex["exemplar_keys"].split(" ")
    assert len(set(keys)) == len(keys) == prompts.NUM_SHOTS
    assert set(keys) <= train_keys and ex["key"] not in keys
    *shots, question = ex["inputs_pretokenized"].split(templates.EXEMPLAR_SEPARATOR)
    fields = parse(template, question)
    direction = check_answer(name, split, ex["key"], fields, ex["targets_pretokenized"])
    subjects = {fields[subject]}
    for key, shot in zip(keys, shots, strict=True):
      shot_fields = parse(template, shot, with_targets=True)
      shot_direction = check_answer(name, "train", key, shot_fields, shot_fields["answer"])
      check_options(shot_fields, shot_fields["answer"])
      assert shot_fields[subject] not in subjects  # not the example's text, nor repeated
      subjects.add(shot_fields[subject])
      if direction:  # a translation's exemplars translate in its direction
        assert shot_direction[1] == direction[1] and shot_direction[0] & direction[0]


def test_chain_of_thought_is_scored_on_its_final_answer():
  vocab = vocabulary.parallel_vocabulary()

  def predict(rationale: str, answer_of) -> Callable:
    def predict_fn(batch):
      out = np.zeros_like(batch["decoder_target_tokens"])
      for row, target in zip(out, batch["decoder_target_tokens"]):
        ids = vocab.encode(f"{rationale} So the answer is {answer_of(target)}.") + [1]
        row[: len(ids)] = ids
      return out

    return predict_fn

  def right(target) -> str:
    """The answer the target ends with ("" in a batch's padding rows)."""
    match = re.search(r"So the answer is (\d+)\.$", vocab.decode(target.tolist()))
    return match[1] if match else ""

  def evaluate(predict_fn) -> float:
    metrics = evaluation.evaluate_task(
        "flan_arithmetic_cot",
        LENGTHS,
        "validation",
        100,
        feature_converter="encdec",
        predict_fn=predict_fn,
        score_fn=None,
    )
    return metrics["flan_arithmetic_cot"]["accuracy"]

  assert evaluate(predict("Another way to see it.", right)) == 100.0
  assert evaluate(predict("Another way to see it.", lambda target: "0")) == 0.0


def test_arithmetic_problems_are_solved_right():
  train, validation = arithmetic.problems("train"), arithmetic.problems("validation")
  assert (len(train), len(validation)) == (2000, 200)
  assert not {p["question"] for p in train} & {p["question"] for p in validation}
  assert len({p["key"] for p in train + validation}) == 2200
  for problem in train + validation:
    assert problem["answer"] == str(solve(problem["question"]))
    equations = re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", problem["rationale"])
    for a, op, b, result in equations:
      assert eval(f"{a} {op} {b}") == int(result)  # noqa: S307  (digits and one operator)
    assert equations[-1][-1] == problem["answer"]
  assert arithmetic.problems.__wrapped__("validation") == validation  # a fixed seed
  story = [next(i for i, (r, _) in enumerate(STORIES) if re.match(r, p["question"])) for p in train]
  counts = np.bincount(story, minlength=len(STORIES))
  assert scipy.stats.chisquare(counts).pvalue > 1e-3  # the five stories equally often


@pytest.mark.parametrize("task", ["flan_country_code_few_shot_options", "flan_arithmetic_cot"])
def test_a_seed_fixes_the_prompts_wherever_they_land(task):
  def prompts_of(examples):
    return {
        ex["key"]: (ex["template"], ex["exemplar_keys"], ex["inputs"].tolist()) for ex in examples
    }

  first = prompts_of(rendered(task, "validation", seed=0))
  shuffled = rendered(task, "validation", seed=0, shuffle=True)
  assert prompts_of(shuffled) == first and [ex["key"] for ex in shuffled] != list(first)
  other = prompts_of(rendered(task, "validation", seed=1))
  common = first.keys() & other.keys()  # the length limits may keep other examples
  assert len(common) >= 0.95 * len(first)
  changed = [k for k in common if first[k] != other[k]]
  assert len(changed) > 0.25 * len(common)  # other templates (of 2 or more) or exemplars


@functools.cache
def train_size(instruction: str) -> int:
  """Train examples with a question, counted from the corpus records and the problems."""
  records = RECORDS["train"].values()
  if instruction == "translation":
    return sum(len(r.texts) > 1 for r in records)
  if instruction == "langid":
    return sum(any(langid_subject_ok(r, lang) for lang in r.texts) for r in records)
  if instruction == "country_code":
    return sum(r.domain == "iso_3166-1" and r.texts["en"] in country_codes() for r in records)
  return len(arithmetic.problems("train"))


def expected_rates(cap: float, template_rates: dict[str, float]) -> dict[str, float]:
  """min(n, cap) * rate[kind] / (sum of the task's kinds' rates) / (variants of that kind)."""
  rates = {}
  for name, variants in VARIANTS.items():
    kind = {
        v: v.removesuffix("_options")
        for v in variants
        if v.removesuffix("_options") in template_rates
    }
    norm = sum(template_rates[k] for k in set(kind.values()))
    for variant, k in kind.items():
      same_kind = list(kind.values()).count(k)
      rates[f"flan_{name}_{variant}"] = (
          min(train_size(name), cap) * template_rates[k] / norm / same_kind
      )
  return rates


@pytest.mark.slow
@pytest.mark.parametrize(
    "cap,template_rates",
    [
        (mixing.DEFAULT_CAP, mixing.DEFAULT_TEMPLATE_RATES),
        (500, {"zero_shot": 1.0, "cot": 3.0}),
        (10**9, {"few_shot": 0.25}),
    ],
)
def test_mixing_rates_follow_the_formula(cap, template_rates):
  for name in VARIANTS:
    assert instructions.num_examples(INSTRUCTIONS[name], "train") == train_size(name)
  assert mixing.mixing_rates(cap, template_rates) == pytest.approx(
      expected_rates(cap, template_rates)
  )


def which_task(ex) -> str:
  """The task of a mixture example, from its template and whether it shows exemplars."""
  name, template = TEMPLATES[ex["template"].decode()]
  kind = "cot" if template.is_cot else "few_shot" if ex["exemplar_keys"] else "zero_shot"
  return f"flan_{name}_{kind}" + ("_options" if template.with_options else "")


@pytest.mark.slow
def test_mixture_samples_at_the_rates():
  mixture = seqio.get_mixture_or_task(mixing.MIXTURE_NAME)
  expected = expected_rates(mixing.DEFAULT_CAP, mixing.DEFAULT_TEMPLATE_RATES)
  assert {t.name: mixture.get_rate(t) for t in mixture.tasks} == pytest.approx(expected)
  n = 1000  # the smallest expected count is ~9; the wrong rates below give p ~ 1e-14 or less
  ds = mixture.get_dataset(
      LENGTHS, "train", seed=0, passthrough_features=["template", "exemplar_keys"]
  ).take(n)
  counts = dict.fromkeys(expected, 0)
  for ex in ds.as_numpy_iterator():
    counts[which_task(ex)] += 1
  observed = list(counts.values())

  def pvalue(rates):
    total = sum(rates.values())
    return scipy.stats.chisquare(observed, [n * rates[t] / total for t in counts]).pvalue

  assert pvalue(expected) > 1e-3, counts
  uncapped = expected_rates(math.inf, mixing.DEFAULT_TEMPLATE_RATES)
  assert pvalue(uncapped) < 1e-6, counts
  uniform_kinds = expected_rates(mixing.DEFAULT_CAP, {"zero_shot": 1, "few_shot": 1, "cot": 1})
  assert pvalue(uniform_kinds) < 1e-6, counts


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,converter",
    [
        (mixing.MIXTURE_NAME, "prefix_lm"),  # every task, and the longest rows (512)
        ("flan_translation_few_shot", "encdec"),  # the longest inputs
        ("flan_arithmetic_cot", "encdec"),  # the longest targets
    ],
)
def test_packed_batches_have_the_declared_shapes(name, converter):
  batches = pipeline.get_batch_iterator(
      name, LENGTHS, "train", 8, feature_converter=converter, pack=True
  )
  for batch in itertools.islice(batches, 2):
    assert all(v.shape[0] == 8 and v.dtype == np.int32 for v in batch.values())
    if converter == "encdec":
      assert batch["encoder_input_tokens"].shape[1] == LENGTHS["inputs"]
      assert batch["decoder_target_tokens"].shape[1] == LENGTHS["targets"]
      segments = batch["encoder_segment_ids"]
    else:
      assert {v.shape[1] for v in batch.values()} == {sum(LENGTHS.values())}
      segments = batch["decoder_segment_ids"]
    assert segments.max() > 1  # several examples share a row


def test_long_examples_are_dropped_not_cut():
  lengths = [(3, 2), (4, 2), (5, 2), (3, 3), (3, 4)]
  ds = tf.data.Dataset.from_generator(
      lambda: ({"inputs": [7] * i, "targets": [7] * t} for i, t in lengths),
      output_signature={k: tf.TensorSpec([None], tf.int32) for k in ("inputs", "targets")},
  )
  kept = flan_tasks.drop_longer_than(ds, limits={"inputs": 4, "targets": 3})
  # targets need room for their EOS: 2 + 1 <= 3
  assert [(len(e["inputs"]), len(e["targets"])) for e in kept.as_numpy_iterator()] == [
      (3, 2),
      (4, 2),
  ]


def test_bad_caps_and_rates_are_rejected():
  for cap in (0, -5, math.nan, math.inf):
    with pytest.raises(ValueError, match=r"cap is .*must be a positive number"):
      mixing.mixing_rates(cap)
  for rate in (0, -0.5, math.nan):
    with pytest.raises(ValueError, match=r"template rate of 'few_shot' is .* positive and finite"):
      mixing.register_flan_mixture("flan_bad", template_rates={"zero_shot": 1, "few_shot": rate})
  with pytest.raises(
      ValueError, match=r"unknown template kind 'one_shot'.*'zero_shot', 'few_shot', 'cot'"
  ):
    mixing.mixing_rates(template_rates={"one_shot": 1})
  with pytest.raises(ValueError, match="template_rates is empty"):
    mixing.mixing_rates(template_rates={})
  assert "flan_bad" not in seqio.MixtureRegistry.names()


def test_mixing_rates_of_some_instruction_tasks():
  some = [INSTRUCTIONS["langid"], INSTRUCTIONS["arithmetic"]]
  rates = mixing.mixing_rates(instruction_tasks=some)
  everything = mixing.mixing_rates()
  assert rates == {
      t: r for t, r in everything.items() if t.split("_")[1] in ("langid", "arithmetic")
  }
  with pytest.raises(
      ValueError, match=r"instruction_tasks is empty; give one or more of \['translation'"
  ):
    mixing.mixing_rates(instruction_tasks=[])
  with pytest.raises(ValueError, match=r"instruction_tasks has \['langid'\], which are not Flan"):
    mixing.register_flan_mixture("flan_bad", instruction_tasks=["langid"])
  assert "flan_bad" not in seqio.MixtureRegistry.names()


def test_register_flan_mixture_with_other_rates():
  try:
    mixture = mixing.register_flan_mixture(
        "flan_test", cap=100, template_rates={"cot": 1, "few_shot": 1}
    )
    expected = expected_rates(100, {"cot": 1, "few_shot": 1})
    assert {t.name: mixture.get_rate(t) for t in mixture.tasks} == pytest.approx(expected)
    assert pipeline.vocab_size("flan_test") == 8192
  finally:
    seqio.MixtureRegistry.remove("flan_test")


def test_gin_fragment_matches_the_mixture():
  gin_fragments.parse_with_tiny_encoder_decoder("gin/mixtures/flan.gin")
  assert gin.query_parameter("MIXTURE_OR_TASK_NAME/macro.value") == mixing.MIXTURE_NAME
  assert gin.query_parameter("TASK_FEATURE_LENGTHS/macro.value") == LENGTHS
  assert gin.query_parameter("TransformerConfig.vocab_size") == pipeline.vocab_size(
      mixing.MIXTURE_NAME
  )
  for limits in flan_tasks.LENGTH_LIMITS.values():  # the lengths never cut a kept example
    assert all(limits[f] <= LENGTHS[f] for f in LENGTHS)
