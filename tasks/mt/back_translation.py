"""Back-translation (Sennrich et al., 2016) as a SeqIO preprocessor.

A reverse model (target -> source) translates monolingual target-language text; each of its
outputs paired with the original text is a synthetic (source, target) example. The target
side is real text, so the forward model learns to write fluent target language from data
that no one translated.
"""

from typing import Callable, Sequence

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import numpy as np
import tensorflow as tf

from model_zoo.errors import ConfigError

PredictFn = Callable[[Sequence[str]], Sequence[str]]


def _predict_texts(predict_fn: PredictFn, texts: np.ndarray) -> np.ndarray:
  """predict_fn on a batch of UTF-8 byte strings, as the byte strings TensorFlow wants back."""
  outputs = list(predict_fn([t.decode("utf-8") for t in texts]))
  if len(outputs) != len(texts):
    raise ValueError(
        f"back-translation's predict_fn returned {len(outputs)} texts for {len(texts)} "
        "inputs; it must return one translation per input text, in order"
    )
  return np.array([o.encode("utf-8") for o in outputs], dtype=object)


def back_translate(
    dataset: tf.data.Dataset,
    *,
    predict_fn: PredictFn,
    batch_size: int = 64,
    text_key: str = "targets",
) -> tf.data.Dataset:
  """Text examples {text_key: target text} -> {"inputs": predict_fn's source, "targets": text}.

  `predict_fn(list of str) -> list of str` is called on up to `batch_size` texts at a time, in
  order and one batch after another (a model on an accelerator is not called concurrently).
  Examples are strings, so the tokenize step of the task follows this one.
  """
  if batch_size < 1:
    raise ConfigError(f"back_translate needs batch_size >= 1; got {batch_size}")

  def translate(texts: tf.Tensor) -> dict[str, tf.Tensor]:
    sources = tf.numpy_function(
        lambda t: _predict_texts(predict_fn, t), [texts], tf.string, stateful=True
    )
    return {"inputs": tf.ensure_shape(sources, texts.shape), "targets": texts}

  texts = dataset.map(lambda example: example[text_key])
  return texts.batch(batch_size).map(translate).unbatch()
