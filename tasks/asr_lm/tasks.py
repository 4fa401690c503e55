"""SeqIO LM tasks over spoken-form text, one per language, and a multilingual mixture.

`asr_lm_<lang>` for each language in `corpus.LANGUAGES` yields `targets` only (decoder-only
LM); all share one sentencepiece vocabulary trained on every language's train split, so
the LM fits any ASR model with that vocabulary for shallow fusion. `asr_lm_multilingual`
samples the languages with temperature `DEFAULT_TEMPERATURE`; `register_mixture` makes
others. Importing this module registers them all; importing it again is harmless.
"""

import functools

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from model_zoo.errors import ConfigError
from tasks import cache, vocabularies
from tasks.asr_lm import corpus

VOCAB_SIZE = 2048
MIXTURE_NAME = "asr_lm_multilingual"
# T=1 samples in proportion to data, T->inf uniformly; 3 lifts the smaller languages
# without repeating them much more often than the larger ones.
DEFAULT_TEMPERATURE = 3.0


def task_name(lang: str) -> str:
  """The task of language `lang` (a code in `corpus.LANGUAGES`)."""
  return f"asr_lm_{lang}"


def _dataset_fn(
    split: str, shuffle_files: bool, seed: int | None = None, *, lang: str
) -> tf.data.Dataset:
  """One in-memory list per split, so nothing to shuffle here: the Task shuffles."""
  del shuffle_files, seed
  return tf.data.Dataset.from_tensor_slices({"text": list(corpus.split_lines(lang, split))})


def vocabulary() -> seqio.SentencePieceVocabulary:
  """SentencePiece (byte fallback) on all languages' train lines, cached after first use."""
  train_text = cache.cache_dir("asr_lm") / "train_all_languages.txt"
  lines = [line for lang in corpus.LANGUAGES for line in corpus.split_lines(lang, "train")]
  data = ("\n".join(lines) + "\n").encode("utf-8")
  if not train_text.exists() or train_text.read_bytes() != data:
    cache.atomic_write(train_text, data)
  return vocabularies.cached_sentencepiece_vocabulary([train_text], VOCAB_SIZE, byte_fallback=True)


def mixing_rates(temperature: float) -> dict[str, float]:
  """Task name -> sampling probability, proportional to n_train ** (1 / temperature)."""
  if temperature <= 0:
    raise ConfigError(f"the mixture temperature must be > 0; got {temperature}")
  weights = {
      task_name(lang): len(corpus.split_lines(lang, "train")) ** (1.0 / temperature)
      for lang in corpus.LANGUAGES
  }
  total = sum(weights.values())
  return {name: weight / total for name, weight in weights.items()}


def register_mixture(name: str, temperature: float = DEFAULT_TEMPERATURE) -> seqio.Mixture:
  """Registers `name`: every language's task, sampled by `mixing_rates(temperature)`.

  Raises seqio's ValueError if a provider called `name` is already registered.
  """
  return seqio.MixtureRegistry.add(name, list(mixing_rates(temperature).items()))


def _register() -> None:
  if MIXTURE_NAME in seqio.MixtureRegistry.names():
    return
  targets = seqio.Feature(vocabulary(), add_eos=True)
  for lang in corpus.LANGUAGES:
    seqio.TaskRegistry.add(
        task_name(lang),
        source=seqio.FunctionDataSource(
            functools.partial(_dataset_fn, lang=lang),
            splits=corpus.SPLITS,
            num_input_examples={s: len(corpus.split_lines(lang, s)) for s in corpus.SPLITS},
        ),
        preprocessors=[
            functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
            seqio.preprocessors.tokenize,
            seqio.CacheDatasetPlaceholder(),
            seqio.preprocessors.append_eos_after_trim,
        ],
        output_features={"targets": targets},
        metric_fns=[],
        shuffle_buffer_size=8192,  # more than any language's split: a full shuffle
    )
  register_mixture(MIXTURE_NAME)


_register()
