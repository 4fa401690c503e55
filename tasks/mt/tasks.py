"""SeqIO tasks for multilingual MT over the parallel catalog corpus, and their mixture.

- `mt_<src>_<tgt>`: translation between English and each other language, both directions
  (two per language); `add_translation_task` adds any other pair of `corpus.LANGUAGES`.
- `mass_<lang>`: MASS span-masking pre-training on each language's text (one per language).
- `mt_multilingual`: all translation tasks sampled with temperature DEFAULT_TEMPERATURE;
  `mt_mixture` (gin) those of the languages with enough messages at a given temperature;
  `register_mixture` makes others, over any tasks of this module.
- `register_back_translation_task`: synthetic pairs from a reverse model's predictions.

Every task reads the corpus through its TFDS dataset (`tfds_dataset.prepare()`) and uses the
one parallel vocabulary; inputs start with the `<2xx>` tag of the language to produce.
Importing this module registers the tasks and the mixture; importing it again is harmless.
"""

import functools
import math
from typing import Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import gin
import seqio

from model_zoo.errors import ConfigError
from tasks import metrics, pipeline
from tasks.mt import back_translation, features, mass
from tasks.parallel import corpus, tfds_dataset
from tasks.parallel import vocabulary as parallel_vocabulary

PIVOT = corpus.SOURCE_LANGUAGE  # every message has English, so every pair through it exists
MIXTURE_NAME = "mt_multilingual"
# Rates proportional to n ** (1/T): T=1 samples in proportion to data, T->inf uniformly. T=5
# gave Arivazhagan et al. (2019, "Massively Multilingual NMT in the Wild") the best trade-off
# between high- and low-resource pairs of T=1, 5 and 100. Here the pairs differ in size by up
# to 6x (sr 6,067 messages, br 1,002): T=5 samples br's pairs at 70% of sr's rate, T=1 at 17%.
DEFAULT_TEMPERATURE = 5.0
# TFDS already shuffled the examples when it wrote the dataset, so a modest buffer mixes
# well; a full one (8192) made the 38-task mixture read and tokenize every task's whole
# split, ~190k examples, before its first batch: 69 s on 2 busy cores, 27 s with 1024.
SHUFFLE_BUFFER_SIZE = 1024

# Task name -> its number of train examples, the n of the temperature rates.
_TRAIN_EXAMPLES: dict[str, int] = {}


def _in_name(lang: str) -> str:
  """`lang` as SeqIO allows it in a task name (no "@"): "sr@latin" -> "sr.latin"."""
  return lang.replace("@", ".")


def task_name(source: str, target: str) -> str:
  """The translation task from `source` into `target` (codes in `corpus.LANGUAGES`), e.g.
  "mt_en_de", "mt_zh_TW_en", "mt_en_sr.latin"."""
  return f"mt_{_in_name(source)}_{_in_name(target)}"


def mass_task_name(lang: str) -> str:
  return f"mass_{_in_name(lang)}"


def default_translation_tasks(languages: Sequence[str] | None = None) -> list[str]:
  """English into each other language of `languages` and back (default: the tasks of
  `mt_multilingual`, every corpus language)."""
  others = [lang for lang in (languages or corpus.LANGUAGES) if lang != PIVOT]
  return [name for lang in others for name in (task_name(PIVOT, lang), task_name(lang, PIVOT))]


def _checked_vocabulary(
    vocabulary: seqio.SentencePieceVocabulary | None, pieces: Sequence[str]
) -> seqio.SentencePieceVocabulary:
  """`vocabulary` (default: the parallel one) after checking that each of `pieces` is one id."""
  vocabulary = vocabulary or parallel_vocabulary.parallel_vocabulary()
  pipeline.check_special_tokens(vocabulary, pieces)
  return vocabulary


def _tokenize_and_tag(vocabulary: seqio.SentencePieceVocabulary, target: str) -> list:
  """Text "inputs"/"targets" -> token ids, `<2target>` first in the inputs, EOS on targets."""
  return [
      seqio.preprocessors.tokenize,  # keeps the texts as *_pretokenized, which metrics read
      seqio.CacheDatasetPlaceholder(),
      functools.partial(features.prepend_id, token_id=features.tag_id(vocabulary, target)),
      seqio.preprocessors.append_eos_after_trim,
  ]


def _add_task(name: str, preprocessors: list, vocabulary, metric_fns: list) -> seqio.Task:
  return seqio.TaskRegistry.add(
      name,
      source=tfds_dataset.prepare(),
      preprocessors=preprocessors,
      output_features=features.output_features(vocabulary),
      metric_fns=metric_fns,
      shuffle_buffer_size=SHUFFLE_BUFFER_SIZE,
  )


def _check_pair(source: str, target: str) -> None:
  corpus.check_language(source)
  corpus.check_language(target)
  if source == target:
    raise ConfigError(
        f"a translation task needs two different languages; got source = target = {source!r}"
    )


def add_translation_task(
    source: str, target: str, *, vocabulary: seqio.SentencePieceVocabulary | None = None
) -> seqio.Task:
  """Registers `task_name(source, target)` (if not yet registered) and returns it.

  Examples are the corpus records that have both languages: inputs = `<2target>` + the
  source text's ids, targets = the target text's ids + EOS. Metrics: sacrebleu BLEU and
  chrF on the decoded predictions against the target text (SeqIO decodes both to str).
  E.g. `add_translation_task("de", "fr")`.
  """
  _check_pair(source, target)
  vocabulary = _checked_vocabulary(vocabulary, [parallel_vocabulary.language_tag(target)])
  name = task_name(source, target)
  _TRAIN_EXAMPLES[name] = len(corpus.pairs(source, target, "train"))
  if name in seqio.TaskRegistry.names():
    return seqio.get_mixture_or_task(name)
  return _add_task(
      name,
      [
          functools.partial(
              seqio.preprocessors.rekey, key_map={"inputs": source, "targets": target}
          ),
          functools.partial(features.drop_empty, keys=("inputs", "targets")),
          *_tokenize_and_tag(vocabulary, target),
      ],
      vocabulary,
      [metrics.bleu, metrics.chrf],
  )


def _num_train_texts(lang: str) -> int:
  """Train records that have `lang`: a MASS or back-translation task's train examples."""
  return sum(lang in record.texts for record in corpus.split_records("train"))


def add_mass_task(
    lang: str, *, vocabulary: seqio.SentencePieceVocabulary | None = None
) -> seqio.Task:
  """Registers `mass_task_name(lang)` (if not yet registered) over `lang`'s text; returns it."""
  vocabulary = _checked_vocabulary(
      vocabulary, [parallel_vocabulary.language_tag(lang), parallel_vocabulary.MASK_TOKEN]
  )
  name = mass_task_name(lang)
  _TRAIN_EXAMPLES[name] = _num_train_texts(lang)
  if name in seqio.TaskRegistry.names():
    return seqio.get_mixture_or_task(name)
  return _add_task(
      name,
      [
          functools.partial(seqio.preprocessors.rekey, key_map={"targets": lang}),
          functools.partial(features.drop_empty, keys=("targets",)),
          # No *_pretokenized copy: the targets become a span, not the text.
          functools.partial(seqio.preprocessors.tokenize, copy_pretokenized=False),
          seqio.CacheDatasetPlaceholder(),
          functools.partial(
              mass.mass,
              tag_id=features.tag_id(vocabulary, lang),
              mask_id=features.mask_id(vocabulary),
          ),
          seqio.preprocessors.append_eos_after_trim,
      ],
      vocabulary,
      [],
  )


def register_back_translation_task(
    name: str,
    predict_fn: back_translation.PredictFn,
    source: str,
    target: str,
    *,
    vocabulary: seqio.SentencePieceVocabulary | None = None,
    batch_size: int = 64,
) -> seqio.Task:
  """Registers `name`: source -> target pairs whose source side `predict_fn` made up.

  `predict_fn` (list of target-language texts -> their `source`-language translations, e.g.
  `trainers.predict_fns.text_predict_fn` of a target -> source model, prompted with
  `features.prompt_prefix(vocabulary, source)`) runs over the target
  language's corpus text; the pairs then go through the translation tasks' tokenize and
  tag steps. No metrics: the inputs of its validation split are the model's own output.
  The task shuffles after back-translation, so with shuffle=True the first example waits
  for predict_fn to translate SHUFFLE_BUFFER_SIZE texts.
  Raises seqio's ValueError if `name` is already registered.
  """
  _check_pair(source, target)
  vocabulary = _checked_vocabulary(vocabulary, [parallel_vocabulary.language_tag(target)])
  task = _add_task(
      name,
      [
          functools.partial(seqio.preprocessors.rekey, key_map={"targets": target}),
          functools.partial(features.drop_empty, keys=("targets",)),
          functools.partial(
              back_translation.back_translate, predict_fn=predict_fn, batch_size=batch_size
          ),
          *_tokenize_and_tag(vocabulary, target),
      ],
      vocabulary,
      [],
  )
  _TRAIN_EXAMPLES[name] = _num_train_texts(target)
  return task


def mixing_rates(
    temperature: float = DEFAULT_TEMPERATURE, tasks: Sequence[str] | None = None
) -> dict[str, float]:
  """Task name -> sampling probability, proportional to n_train_examples ** (1 / temperature).

  `tasks` (default: `default_translation_tasks()`) may name any task registered by this
  module: translation, MASS or back-translation.
  """
  if not temperature > 0:
    raise ConfigError(
        f"the mixture temperature must be > 0 (1 samples in proportion to data, larger values "
        f"flatten toward uniform; the default is {DEFAULT_TEMPERATURE}); got {temperature}"
    )
  tasks = default_translation_tasks() if tasks is None else list(tasks)
  if not tasks:
    raise ConfigError("a mixture needs at least one task; got none")
  unknown = [name for name in tasks if name not in _TRAIN_EXAMPLES]
  if unknown:
    raise ConfigError(
        f"tasks {unknown} are not tasks of tasks.mt.tasks, whose sizes the rates need; "
        "register them first with add_translation_task(source, target), add_mass_task(lang) "
        "or register_back_translation_task(...)"
    )
  weights = {name: _TRAIN_EXAMPLES[name] ** (1.0 / temperature) for name in tasks}
  total = math.fsum(weights.values())
  return {name: weight / total for name, weight in weights.items()}


def register_mixture(
    name: str, temperature: float = DEFAULT_TEMPERATURE, tasks: Sequence[str] | None = None
) -> seqio.Mixture:
  """Registers `name`: `tasks` sampled by `mixing_rates(temperature, tasks)`.

  E.g. `register_mixture("mt_t1", 1.0)`. Raises seqio's ValueError if `name` exists.
  """
  return seqio.MixtureRegistry.add(name, list(mixing_rates(temperature, tasks).items()))


def mt_mixture(
    min_messages: int = corpus.MIN_MESSAGES, temperature: float = DEFAULT_TEMPERATURE
) -> str:
  """Registers (once) and names the mixture of English <-> each language with enough messages.

  The languages are `corpus.languages_with(min_messages)`: those whose catalogs give at
  least `min_messages` translated messages; the tasks are sampled at `temperature`. A run
  config binds `MIXTURE_OR_TASK_NAME = @mt_mixture()` (gin/mixtures/mt.gin), so the
  threshold is read after every gin file and flag: `--gin.mt_mixture.min_messages=5000`.
  E.g. `mt_mixture(3000)` -> "mt_multilingual_min3000_t5".
  """
  try:
    languages = corpus.languages_with(min_messages)
  except ConfigError as e:
    raise ConfigError(f"mt_mixture.min_messages={min_messages}: {e}") from e
  name = f"{MIXTURE_NAME}_min{min_messages}_t{temperature:g}"
  if name not in seqio.MixtureRegistry.names():
    register_mixture(name, temperature, default_translation_tasks(languages))
  return name


def _register() -> None:
  vocabulary = parallel_vocabulary.parallel_vocabulary()
  for lang in corpus.LANGUAGES:
    if lang != PIVOT:
      add_translation_task(PIVOT, lang, vocabulary=vocabulary)
      add_translation_task(lang, PIVOT, vocabulary=vocabulary)
    add_mass_task(lang, vocabulary=vocabulary)
  if MIXTURE_NAME not in seqio.MixtureRegistry.names():
    register_mixture(MIXTURE_NAME)
    with gin.unlock_config():  # the module may be imported after a run's config is final
      gin.external_configurable(mt_mixture, module="tasks.mt.tasks")


_register()
