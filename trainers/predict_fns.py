"""A podzoo Model as a `predict_fn`: texts in, the model's decoded texts out.

Tasks that need a model (back-translation) take such a callable and never import the
trainers; the caller builds it here and passes it in.
"""

import itertools
from typing import Callable, Optional, Sequence

import jax
import numpy as np

from trainers import text_prediction


def text_predict_fn(
    model,
    params,
    vocabulary,
    *,
    prompt_prefix: Sequence[int] = (),
    prompt_eos: bool = False,
    max_length: int = 64,
    batch_size: int = 32,
    decoder: Optional[Callable] = None,
    seed: int = 0,
) -> Callable[[Sequence[str]], list[str]]:
  """predict_fn(texts) -> the model's continuation of each text, decoded up to EOS.

  `model` is a model_zoo.models Model and `params` its parameters on this host;
  `vocabulary` encodes and decodes text (a seqio Vocabulary). Each text becomes the prompt
  `prompt_prefix` + its ids (e.g. an MT task's `<2de>` tag; cut to `max_length` tokens,
  the last of them EOS with `prompt_eos`), the model's prompt batch as its feature
  converter lays it out (`max_length` each for prompt and output). The rows go through
  `model.predict_batch` (`decoder`: default greedy) `batch_size` at a time, the last batch
  padded with empty rows so one compiled function serves every call.
  """
  converter = model.FEATURE_CONVERTER_CLS
  length = converter.decode_length({"inputs": max_length, "targets": max_length})
  predict = jax.jit(lambda p, batch, rng: model.predict_batch(p, batch, rng, decoder=decoder)[0])
  key = jax.random.PRNGKey(seed)
  calls = itertools.count()  # a fresh rng per batch, for sampling decoders

  def prompt(text: str) -> list[int]:
    ids = [*prompt_prefix, *vocabulary.encode(text)][: max_length - prompt_eos]
    return ids + [vocabulary.eos_id] * prompt_eos

  def predict_fn(texts: Sequence[str]) -> list[str]:
    outputs = []
    for start in range(0, len(texts), batch_size):
      chunk = texts[start : start + batch_size]
      batch = model.prompt_batch([prompt(text) for text in chunk], batch_size, length)
      tokens = np.asarray(predict(params, batch, jax.random.fold_in(key, next(calls))))
      outputs += [
          text_prediction.decode_tokens(vocabulary, row, model.eos_id)
          for row in tokens[: len(chunk)]
      ]
    return outputs

  return predict_fn
