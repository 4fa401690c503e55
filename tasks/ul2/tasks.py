"""UL2's mixture of denoisers over the King James Genesis: four tasks and the `ul2_kjv` mixture.

UL2 (Tay et al., 2022) pre-trains on a mixture of R (T5's span corruption), X (extreme:
long spans or dense noise) and S (prefix LM) denoising, each example tagged with its
denoiser's mode token. Every task here has `inputs` and `targets`, so it trains an
encoder-decoder (`encdec` converter) or a decoder-only prefix LM (`prefix_lm`). Importing
this module registers the tasks and the default mixture; importing it again is harmless.
"""

import functools
import math
from typing import Callable, Mapping

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from model_zoo.errors import ConfigError
from tasks import quickstart
from tasks.ul2 import denoisers, vocabulary

# Span-corruption tasks: (mode, mean span length, noise density). R is T5's setting; the
# X pair is UL2's extreme corruption, one by long spans and one by dense noise.
SPAN_CORRUPTION_TASKS = {
    "ul2_kjv_r": ("R", 3, 0.15),
    "ul2_kjv_x_long": ("X", 32, 0.15),
    "ul2_kjv_x_dense": ("X", 3, 0.5),
}
PREFIX_LM_TASK = "ul2_kjv_s"
MIXTURE_NAME = "ul2_kjv"
DEFAULT_RATES = {
    "ul2_kjv_r": 0.4,
    "ul2_kjv_x_long": 0.2,
    "ul2_kjv_x_dense": 0.2,
    "ul2_kjv_s": 0.2,
}
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


def _dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
  """One file, so nothing to shuffle here: the Task shuffles (and shards) the examples."""
  del shuffle_files, seed
  return tf.data.Dataset.from_tensor_slices({"text": verse_groups(split)})


def _add_task(
    name: str, denoiser: Callable[..., tf.data.Dataset], vocab: seqio.SentencePieceVocabulary
) -> None:
  if name in seqio.TaskRegistry.names():
    return
  seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(
          _dataset_fn,
          splits=("train", "validation"),
          num_input_examples={s: len(verse_groups(s)) for s in ("train", "validation")},
      ),
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
      shuffle_buffer_size=1024,  # more than the corpus: a full shuffle each epoch
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
  for name, (mode, mean_span, noise_density) in SPAN_CORRUPTION_TASKS.items():
    denoiser = functools.partial(
        denoisers.span_corruption,
        mode_id=vocabulary.mode_id(vocab, mode),
        noise_density=noise_density,
        mean_span=mean_span,
    )
    _add_task(name, denoiser, vocab)
  _add_task(
      PREFIX_LM_TASK,
      functools.partial(denoisers.prefix_lm, mode_id=vocabulary.mode_id(vocab, "S")),
      vocab,
  )
  if MIXTURE_NAME not in seqio.MixtureRegistry.names():
    register_mixture(MIXTURE_NAME, DEFAULT_RATES)


_register()
