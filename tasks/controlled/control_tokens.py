"""Control tokens (PaLM 2): steering a pre-trained LM at inference at no extra cost.

A fraction of the pre-training examples starts with tokens that describe an attribute of
the example, here its language (what the LangID model predicts) and its length bucket (by
token count). The model learns what each token implies about the text that follows; at
decode time a prompt of chosen control tokens (`control_prompt`) asks for that attribute.
The rest of the examples stay plain, so the model still works without a prompt.

Each control token is a SentencePiece user-defined symbol, one id. SentencePiece puts its
word-boundary piece "▁" before the first of them when it encodes a text that starts with
one; the decode-time prompt, encoded the same way, starts with it too, so training and
inference agree.

Importing this module registers the task `controlled_lm` (importing it again is harmless):
train on it with --gin.MIXTURE_OR_TASK_MODULE="'tasks.controlled.control_tokens'"
--gin.MIXTURE_OR_TASK_NAME="'controlled_lm'" --gin.TransformerConfig.vocab_size=8192.
"""

import functools
from typing import Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from model_zoo.errors import ConfigError
from tasks import vocabularies
from tasks.langid import model as langid_model, train as langid_train
from tasks.parallel import corpus, vocabulary as parallel_vocabulary

TASK_NAME = "controlled_lm"
# Four of corpus.CORE_LANGUAGES with the most text (4.7k-7.9k train texts each).
CONTROL_LANGUAGES = ("en", "de", "fr", "es")
LENGTH_BUCKETS = ("short", "medium", "long")
# A text of n ids (control vocabulary, no EOS) is "short" if n <= 8, "medium" if 9 <= n <= 15,
# else "long". Measured on the 20,539 train texts of `controlled_lm`: 34.8% short, 31.6%
# medium, 33.6% long (validation, 2,131: 32.4%, 33.6%, 34.0%). Counts are whole numbers:
# (7, 15), (8, 14) and (8, 16) each miss a third by more (29.0% short, 27.7% medium, ...).
# (The vocabulary now serves 93 languages, so these four take more ids: (6, 11) was thirds
# in the 20-language one.)
LENGTH_BOUNDARIES = (8, 15)
# More than the task's texts (~20k train): a full shuffle, so batches mix the languages.
SHUFFLE_BUFFER_SIZE = 1 << 15
_HASH_BUCKETS = 1 << 32


def _tag(kind: str, value):
  """`<kind:value>`; `value` is a str, or a string tensor inside the preprocessor."""
  return f"<{kind}:" + value + ">"


def language_token(lang: str) -> str:
  """The control token of a language, e.g. `<lang:de>`."""
  if lang not in CONTROL_LANGUAGES:
    raise ConfigError(
        f"no control token for language {lang!r}; control languages are {CONTROL_LANGUAGES} "
        "(tasks.controlled.control_tokens.CONTROL_LANGUAGES)"
    )
  return _tag("lang", lang)


def length_token(bucket: str) -> str:
  """The control token of a length bucket, e.g. `<len:short>`."""
  if bucket not in LENGTH_BUCKETS:
    raise ConfigError(f"no length bucket {bucket!r}; length buckets are {LENGTH_BUCKETS}")
  return _tag("len", bucket)


CONTROL_TOKENS = tuple(map(language_token, CONTROL_LANGUAGES)) + tuple(
    map(length_token, LENGTH_BUCKETS)
)


def length_bucket(num_tokens: int, boundaries: Sequence[int] = LENGTH_BOUNDARIES) -> str:
  """The bucket of a text of `num_tokens` ids: the first whose upper boundary it does not exceed.

  `boundaries` are the inclusive upper ends of every bucket but the last, increasing.
  """
  if len(boundaries) != len(LENGTH_BUCKETS) - 1 or list(boundaries) != sorted(set(boundaries)):
    raise ConfigError(
        f"length boundaries must be {len(LENGTH_BUCKETS) - 1} strictly increasing token counts "
        f"(one between each two of {LENGTH_BUCKETS}), e.g. {LENGTH_BOUNDARIES}; got {boundaries}"
    )
  for bucket, upper in zip(LENGTH_BUCKETS, boundaries):
    if num_tokens <= upper:
      return bucket
  return LENGTH_BUCKETS[-1]


def control_prompt(language: str | None = None, length: str | None = None) -> str:
  """The control tokens that ask for `language` and/or `length` at decode time.

  Training examples carry both, language first: a prompt of the language alone leaves the
  model to choose a length; None for both is the empty (unconditioned) prompt.
  """
  return (language_token(language) if language is not None else "") + (
      length_token(length) if length is not None else ""
  )


def control_vocabulary() -> seqio.SentencePieceVocabulary:
  """The parallel vocabulary's recipe and text, plus the control tokens as one id each."""
  return vocabularies.cached_sentencepiece_vocabulary(
      [parallel_vocabulary.train_text_file()],
      parallel_vocabulary.VOCAB_SIZE,
      user_defined_symbols=parallel_vocabulary.SPECIAL_TOKENS + CONTROL_TOKENS,
  )


def annotate(
    texts: Sequence[str],
    langid: langid_model.LangIdModel,
    vocabulary: seqio.Vocabulary,
    boundaries: Sequence[int] = LENGTH_BOUNDARIES,
) -> list[tuple[str, str]]:
  """(language, length bucket) of each text: LangID's prediction, and the bucket of its ids."""
  languages, _ = langid.predict(texts)
  return [
      (lang, length_bucket(len(vocabulary.encode(text)), boundaries))
      for text, lang in zip(texts, languages)
  ]


def _check_fraction(fraction: float) -> None:
  if not 0.0 <= fraction <= 1.0:
    raise ConfigError(
        f"the share of examples given control tokens must be in [0, 1], e.g. fraction=0.5 "
        f"(PaLM 2 controls a small share, so the model also works unprompted); got "
        f"fraction={fraction!r}"
    )


def _check_seed(seed: int) -> None:
  if not 0 <= seed < 1 << 63:
    raise ConfigError(f"the control-token seed must be in [0, 2**63); got seed={seed!r}")


def prepend_control_tokens(dataset: tf.data.Dataset, fraction: float, seed: int) -> tf.data.Dataset:
  """Prepends "<lang:X><len:Y> " to the "targets" text of a `fraction` of the examples.

  Examples are {"targets", "language", "length"} strings. Which ones is decided by SipHash
  (tf.strings.to_hash_bucket_strong) of the text keyed by `seed`, not by a random draw: the
  same examples on every pass, host and resumed run, and a larger fraction (same seed)
  controls a superset of a smaller one's.
  """
  _check_fraction(fraction)
  _check_seed(seed)
  threshold = round(fraction * _HASH_BUCKETS)

  @seqio.map_over_dataset
  def prepend(example):
    text = example["targets"]
    chosen = tf.strings.to_hash_bucket_strong(text, _HASH_BUCKETS, key=[seed, 0]) < threshold
    prompt = _tag("lang", example["language"]) + _tag("len", example["length"])
    return {**example, "targets": tf.where(chosen, prompt + " " + text, text)}

  return prepend(dataset)


def _check_languages(languages: Sequence[str]) -> tuple[str, ...]:
  unknown = [lang for lang in languages if lang not in CONTROL_LANGUAGES]
  if not languages or unknown:
    raise ConfigError(
        f"a control-token task's languages must be a non-empty subset of {CONTROL_LANGUAGES}, "
        f"the languages with control tokens; got {tuple(languages)}"
    )
  return tuple(dict.fromkeys(languages))


@functools.cache
def _examples(languages: tuple[str, ...], split: str) -> tuple[tuple[str, str, str], ...]:
  """(text, language, length bucket) of the distinct texts of `languages` in `split`.

  Texts LangID puts outside `languages` are left out (no control token describes them):
  7.4% of the four control languages' distinct train texts, 13.3% of validation.
  """
  texts = list(dict.fromkeys(t for lang in languages for t in corpus.monolingual(lang, split)))
  annotations = annotate(texts, langid_train.load_or_train(), control_vocabulary())
  return tuple(
      (text, lang, length) for text, (lang, length) in zip(texts, annotations) if lang in languages
  )


def _dataset_fn(
    languages: tuple[str, ...], split: str, shuffle_files: bool, seed: int | None = None
) -> tf.data.Dataset:
  del shuffle_files, seed  # one in-memory source: the Task shuffles the examples
  texts, langs, lengths = zip(*_examples(languages, split))
  return tf.data.Dataset.from_tensor_slices(
      {"targets": list(texts), "language": list(langs), "length": list(lengths)}
  )


def register_control_token_task(
    name: str = TASK_NAME,
    languages: Sequence[str] = CONTROL_LANGUAGES,
    fraction: float = 0.5,
    seed: int = 0,
) -> seqio.Task:
  """Registers `name`: causal LM over `languages`' corpus text, a `fraction` with control tokens.

  "targets" only (decoder-only), ending with EOS. The texts are annotated (LangID, token
  count) on the first read of each split, then kept in memory. Raises seqio's ValueError if
  `name` is already registered.
  """
  languages = _check_languages(languages)
  _check_fraction(fraction)
  _check_seed(seed)
  return seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(
          functools.partial(_dataset_fn, languages), splits=corpus.SPLITS
      ),
      preprocessors=[
          functools.partial(prepend_control_tokens, fraction=fraction, seed=seed),
          seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(),
          seqio.preprocessors.append_eos_after_trim,
      ],
      output_features={"targets": seqio.Feature(control_vocabulary(), add_eos=True)},
      metric_fns=[],
      shuffle_buffer_size=SHUFFLE_BUFFER_SIZE,
  )


if TASK_NAME not in seqio.TaskRegistry.names():
  register_control_token_task()
