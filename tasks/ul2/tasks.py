"""UL2's mixture of denoisers over the King James Genesis: four tasks and the `ul2_kjv` mixture.

UL2 (Tay et al., 2022) pre-trains on a mixture of R (T5's span corruption), X (extreme:
long spans or dense noise) and S (prefix LM) denoising, each example tagged with its
denoiser's mode token. Every task here has `inputs` and `targets`, so it trains an
encoder-decoder (`encdec` converter) or a decoder-only prefix LM (`prefix_lm`). Importing
this module registers the tasks and the default mixture; importing it again is harmless.
"""

import functools
import math
from typing import Callable, Mapping, Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import numpy as np
import seqio
import tensorflow as tf

from model_zoo.errors import ConfigError
from tasks import quickstart
from tasks.ul2 import denoisers, vocabulary

# UL2's denoisers by task-name suffix: span corruption as (mode, mean span length, noise
# density), R being T5's setting and the X pair UL2's extreme corruption, one by long spans
# and one by dense noise; and S, the prefix LM.
SPAN_CORRUPTION = {"r": ("R", 3, 0.15), "x_long": ("X", 32, 0.15), "x_dense": ("X", 3, 0.5)}
PREFIX_LM = "s"
DENOISER_RATES = {"r": 0.4, "x_long": 0.2, "x_dense": 0.2, "s": 0.2}

MIXTURE_NAME = "ul2_kjv"
SPAN_CORRUPTION_TASKS = {f"{MIXTURE_NAME}_{k}": v for k, v in SPAN_CORRUPTION.items()}
PREFIX_LM_TASK = f"{MIXTURE_NAME}_{PREFIX_LM}"
DEFAULT_RATES = {f"{MIXTURE_NAME}_{k}": rate for k, rate in DENOISER_RATES.items()}
# Four consecutive verses make ~155 tokens (at most 257), which lengths of 256 hold whole.
# The mean-32 X-denoiser reaches its mean only on sources of ~1000 tokens or more; here
# T5's rounding gives it one span per example (~23 tokens on average).
VERSES_PER_EXAMPLE = 4


def verse_groups(split: str) -> list[str]:
  """The examples of `split`: runs of VERSES_PER_EXAMPLE verses, joined by spaces.

  The runs are consecutive within the split (quickstart.split_lines), so train runs skip
  the held-out verses and validation runs are of verses 20 apart. The last run may be
  shorter.
  """
  lines = quickstart.split_lines(split)
  return [
      " ".join(lines[i : i + VERSES_PER_EXAMPLE]) for i in range(0, len(lines), VERSES_PER_EXAMPLE)
  ]


def text_source(texts: Callable[[str], Sequence[str]], splits: Sequence[str]) -> seqio.DataSource:
  """A source of {"text"} from `texts(split)`, an in-memory list (the Task shuffles it).

  With shuffle_files (training), the list comes in an order of its own for each seed, so a
  Task's shuffle buffer smaller than the list still mixes all of it.
  """

  def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
    examples = list(texts(split))
    if shuffle_files:
      order = np.random.default_rng(seed).permutation(len(examples))
      examples = [examples[i] for i in order]
    return tf.data.Dataset.from_tensor_slices({"text": examples})

  return seqio.FunctionDataSource(
      dataset_fn, splits=splits, num_input_examples={s: len(texts(s)) for s in splits}
  )


def add_denoising_tasks(
    prefix: str,
    source: seqio.DataSource,
    vocab: seqio.SentencePieceVocabulary,
    mode_ids: Mapping[str, int],
    num_sentinels: int | None = None,
) -> dict[str, float]:
  """Registers `<prefix>_<suffix>` for each UL2 denoiser over `source`'s "text"; returns
  task name -> default mixing rate.

  `mode_ids`: denoiser mode ("R", "X", "S") -> its token id. Span sentinels count down from
  the top of `vocab` (T5's `<extra_id_i>`), `num_sentinels` of them (default: all its
  extra_ids), so lower extra ids stay free for other uses, e.g. mode tokens.
  """
  denoisers_by_suffix = {
      suffix: functools.partial(
          denoisers.span_corruption,
          mode_id=mode_ids[mode],
          noise_density=noise_density,
          mean_span=mean_span,
          num_sentinels=num_sentinels,
      )
      for suffix, (mode, mean_span, noise_density) in SPAN_CORRUPTION.items()
  }
  denoisers_by_suffix[PREFIX_LM] = functools.partial(denoisers.prefix_lm, mode_id=mode_ids["S"])
  for suffix, denoiser in denoisers_by_suffix.items():
    _add_task(f"{prefix}_{suffix}", source, denoiser, vocab)
  return {f"{prefix}_{suffix}": rate for suffix, rate in DENOISER_RATES.items()}


def _add_task(
    name: str,
    source: seqio.DataSource,
    denoiser: Callable[..., tf.data.Dataset],
    vocab: seqio.SentencePieceVocabulary,
) -> None:
  if name in seqio.TaskRegistry.names():
    return
  seqio.TaskRegistry.add(
      name,
      source=source,
      preprocessors=[
          functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
          seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(),
          denoiser,
          seqio.preprocessors.append_eos_after_trim,
      ],
      # No EOS after the inputs: in a prefix LM it would sit mid-sequence, and an encoder
      # sees where its inputs end anyway.
      output_features={
          "inputs": seqio.Feature(vocab, add_eos=False),
          "targets": seqio.Feature(vocab, add_eos=True),
      },
      metric_fns=[],
      shuffle_buffer_size=1024,
  )


def register_mixture(name: str, rates: Mapping[str, float]) -> seqio.Mixture:
  """Registers mixture `name`, which samples each task with probability proportional to its rate.

  E.g. `register_mixture("my_ul2", {"ul2_kjv_r": 1, "ul2_kjv_s": 1})`. Every rate must be a
  positive finite number; a task that should not be sampled is left out.
  """
  if not rates:
    raise ConfigError(f"mixture {name!r} needs at least one task and its rate; got none")
  for task, rate in rates.items():
    if not (rate > 0 and math.isfinite(rate)):
      raise ConfigError(
          f"mixture {name!r}: the rate of task {task!r} is {rate!r}; rates must be positive "
          "and finite (leave a task out instead of giving it rate 0)"
      )
  return seqio.MixtureRegistry.add(name, list(rates.items()))


def _register() -> None:
  vocab = vocabulary.ul2_vocabulary()
  mode_ids = {mode: vocabulary.mode_id(vocab, mode) for mode in vocabulary.MODE_TOKENS}
  add_denoising_tasks(
      MIXTURE_NAME, text_source(verse_groups, ("train", "validation")), vocab, mode_ids
  )
  if MIXTURE_NAME not in seqio.MixtureRegistry.names():
    register_mixture(MIXTURE_NAME, DEFAULT_RATES)


_register()
