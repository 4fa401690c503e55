"""The adapter catalog of tools/build_adapter_catalog.py: which adapters it trains, on what
data, with what author's description, and the tasks that data needs.

Every adapter adapts one base, a decoder-only prefix LM in the 8320-token pre-training
vocabulary (tasks/pretraining), so every task here is in that vocabulary:
  * Flan instruction tasks (tasks/flan): translation, language ID, country codes and
    arithmetic word problems, zero-shot and few-shot, and arithmetic with chain of thought;
  * `adaptercat_text_<lang>_s`: UL2's S-denoiser (a prefix and its continuation) over one
    language's catalog documents (tasks/pretraining/text.py's documents, that language only);
  * `adaptercat_genesis_s`: the same over the Book of Genesis (King James Version, tasks/ul2);
  * `adaptercat_spoken_<lang>_s`: the same over the spoken-form ASR LM text (tasks/asr_lm:
    numbers and symbols written out as words).
As in the public catalogs Stylus studies, some adapters come with a poor description or none
(`Adapter.description`); the refiner writes a better one from the card.

Importing this module registers the tasks (MIXTURE_OR_TASK_MODULE of the catalog's runs);
importing it again is harmless.
"""

import dataclasses
import functools
from typing import Mapping

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import tasks.flan.tasks  # noqa: F401  (registers the Flan tasks)
from tasks.asr_lm import corpus as spoken_corpus
from tasks.flan import iso_codes
from tasks.parallel import corpus
from tasks.pretraining import text, vocabulary
from tasks.ul2 import tasks as ul2_tasks

PREFIX = "adaptercat"
TEXT_LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "fi", "tr", "ja", "el")
SPOKEN_LANGUAGES = ("de", "fr")
SPOKEN_LINES_PER_EXAMPLE = 4
FLAN_LENGTHS = {"inputs": 384, "targets": 128}  # gin/mixtures/flan.gin's
TEXT_LENGTHS = {"inputs": 128, "targets": 128}  # gin/mixtures/catalog_ul2.gin's


@dataclasses.dataclass(frozen=True)
class Adapter:
  name: str  # its directory in the catalog
  task: str  # the SeqIO task it trains on
  description: str  # the author's: sometimes poor or empty on purpose
  lengths: Mapping[str, int]


def text_task(lang: str) -> str:
  return f"{PREFIX}_text_{lang}_{ul2_tasks.PREFIX_LM}"


def spoken_task(lang: str) -> str:
  return f"{PREFIX}_spoken_{lang}_{ul2_tasks.PREFIX_LM}"


GENESIS_TASK = f"{PREFIX}_genesis_{ul2_tasks.PREFIX_LM}"

_FLAN = (
    ("translate-instruct", "flan_translation_zero_shot", "Translate a sentence when asked."),
    ("translate-fewshot", "flan_translation_few_shot", ""),
    ("langid-instruct", "flan_langid_zero_shot", "Says which language a sentence is in."),
    ("langid-fewshot", "flan_langid_few_shot", "v2"),
    ("country-codes", "flan_country_code_zero_shot", "ISO 3166 country codes and names."),
    ("country-codes-fewshot", "flan_country_code_few_shot", ""),
    ("math-word-problems", "flan_arithmetic_zero_shot", "Solves small arithmetic problems."),
    ("math-fewshot", "flan_arithmetic_few_shot", "lora r8 final"),
    ("math-cot", "flan_arithmetic_cot", "Works arithmetic out step by step."),
)
_POOR = ("", "test", "my adapter", "final", "v3", "")  # given in turn to every other text adapter

ADAPTERS: tuple[Adapter, ...] = (
    *(Adapter(name, task, description, FLAN_LENGTHS) for name, task, description in _FLAN),
    *(
        Adapter(
            f"text-{lang}",
            text_task(lang),
            _POOR[i // 2 % len(_POOR)] if i % 2 else f"Writes {lang} interface text.",
            TEXT_LENGTHS,
        )
        for i, lang in enumerate(TEXT_LANGUAGES)
    ),
    Adapter("genesis", GENESIS_TASK, "", TEXT_LENGTHS),
    *(
        Adapter(f"spoken-{lang}", spoken_task(lang), "asr lm", TEXT_LENGTHS)
        for lang in SPOKEN_LANGUAGES
    ),
)


def _spoken_examples(lang: str, split: str) -> list[str]:
  lines = spoken_corpus.split_lines(lang, split)
  step = SPOKEN_LINES_PER_EXAMPLE
  return [" ".join(lines[i : i + step]) for i in range(0, len(lines), step)]


def _add(name_prefix: str, texts, splits) -> None:
  """UL2's denoisers over `texts(split)` as `<name_prefix>_<denoiser>`; the catalog uses S."""
  ul2_tasks.add_denoising_tasks(
      name_prefix,
      ul2_tasks.text_source(texts, splits),
      vocabulary.pretraining_vocabulary(),
      {mode: vocabulary.mode_id(mode) for mode in vocabulary.MODES},
      num_sentinels=vocabulary.NUM_SENTINELS,
  )


def register() -> None:
  for lang in TEXT_LANGUAGES:
    _add(f"{PREFIX}_text_{lang}", functools.partial(text.language_documents, lang), corpus.SPLITS)
  for lang in SPOKEN_LANGUAGES:
    _add(
        f"{PREFIX}_spoken_{lang}",
        functools.partial(_spoken_examples, lang),
        spoken_corpus.SPLITS,
    )
  _add(f"{PREFIX}_genesis", ul2_tasks.verse_groups, ("train", "validation"))


_FLAN_FAMILIES = {
    "translation": "translation instructions: translate a sentence into another language",
    "langid": "language identification: name the language a sentence is written in",
    "country_code": "country codes: give a country's ISO code or the country of a code",
    "arithmetic": "arithmetic word problems: compute the number that answers the question",
}
_FLAN_SETTINGS = {
    "zero_shot": "zero-shot prompts",
    "few_shot": "few-shot prompts with worked examples",
    "cot": "chain-of-thought reasoning before the answer",
}


def describe_task(task: str) -> str:
  """A phrase saying what training on `task` teaches (the refiner's first words); "" for a
  task this catalog does not know."""
  names = iso_codes.language_names()
  for family, phrase in _FLAN_FAMILIES.items():
    for setting, how in _FLAN_SETTINGS.items():
      if task == f"flan_{family}_{setting}":
        return f"{phrase}, {how}"
  for lang in TEXT_LANGUAGES:
    if task == text_task(lang):
      return f"continues {names.get(lang, lang)} text: software interface messages"
  for lang in SPOKEN_LANGUAGES:
    if task == spoken_task(lang):
      return f"continues spoken {names.get(lang, lang)} text with numbers written as words"
  if task == GENESIS_TASK:
    return "continues English Bible text from the Book of Genesis, King James Version"
  return ""


def metric_of(task: str) -> str:
  """How a continuation of `task`'s prompt is scored: "chrf" (translation, text to continue),
  "cot_accuracy" (a chain of thought's final answer) or "accuracy" (the exact answer)."""
  if not task.startswith("flan_") or task.startswith("flan_translation"):
    return "chrf"
  return "cot_accuracy" if task.endswith("_cot") else "accuracy"


register()
