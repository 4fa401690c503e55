"""A podzoo Model as the `predict_fn` that back-translation calls: text in, text out.

Kept apart from the TensorFlow-side modules: importing it pulls in JAX and the trainers.
"""

import itertools
from typing import Callable, Optional, Sequence

import jax
import numpy as np
import seqio

from tasks import pipeline
from tasks.mt import features
from tasks.parallel import vocabulary as parallel_vocabulary
from trainers import infer, text_prediction


def model_predict_fn(
    model,
    params,
    vocabulary: seqio.SentencePieceVocabulary,
    *,
    output_language: str,
    max_length: int = 64,
    batch_size: int = 32,
    decoder: Optional[Callable] = None,
    seed: int = 0,
) -> Callable[[Sequence[str]], list[str]]:
  """predict_fn(texts) -> the model's translations of `texts` into `output_language`.

  `model` is a model_zoo.models EncoderDecoderModel or DecoderOnlyModel (a prefix LM),
  `params` its parameters on this host. Each text becomes what the MT tasks feed the model:
  `<2output_language>` + its ids (cut to `max_length` tokens), as the encoder input or as
  the prompt of a decoder-only row of 2 * max_length (prompt, then output). The rows go
  through `model.predict_batch` (`decoder`: default greedy) `batch_size` at a time, the last
  batch padded with empty rows so one compiled function serves every call; the outputs are
  decoded up to EOS.
  """
  tag_piece = parallel_vocabulary.language_tag(output_language)
  pipeline.check_special_tokens(vocabulary, [tag_piece])
  tag = features.tag_id(vocabulary, output_language)
  converter = model.FEATURE_CONVERTER
  length = max_length if converter == "encdec" else 2 * max_length
  predict = jax.jit(lambda p, batch, rng: model.predict_batch(p, batch, rng, decoder=decoder)[0])
  key = jax.random.PRNGKey(seed)
  calls = itertools.count()  # a fresh rng per batch, for sampling decoders

  def prompt(text: str) -> list[int]:
    ids = [tag, *vocabulary.encode(text)][: max_length - features.INPUTS_ADD_EOS]
    return ids + [vocabulary.eos_id] * features.INPUTS_ADD_EOS

  def predict_fn(texts: Sequence[str]) -> list[str]:
    outputs = []
    for start in range(0, len(texts), batch_size):
      chunk = texts[start : start + batch_size]
      examples = [
          infer.Example(start + i, prompt(text), [], f"back-translation text {start + i}")
          for i, text in enumerate(chunk)
      ]
      batch = infer.model_batch(converter, "predict", examples, batch_size, length)
      tokens = np.asarray(predict(params, batch, jax.random.fold_in(key, next(calls))))
      outputs += [
          text_prediction.decode_tokens(vocabulary, row, model.eos_id)
          for row in tokens[: len(chunk)]
      ]
    return outputs

  return predict_fn
