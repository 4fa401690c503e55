"""Repeated spans: catalog text whose rows repeat a segment of themselves.

Each row is the start of a document followed by a copy of one of its segments, of random
length and from a random place, so predicting the copy means finding where the current token
appeared before and continuing from there (induction: after "... A B ... A", predict B), not
looking a fixed distance back. A tiny LM learns that skill within a few hundred steps on these
rows, while on plain text it takes far longer. In-context use of a frozen LM (SPAE's few-shot
classification, model_zoo/spae/in_context.py) rests on it, so a tiny LM trained here can
stand in for a large one in tests and CPU experiments.
"""

from typing import Mapping

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

MIN_SEGMENT = 4  # tokens: shorter copies teach little beyond bigrams


@seqio.map_over_dataset(num_seeds=1)
def _repeat(example: Mapping[str, tf.Tensor], seed: tf.Tensor, half: int) -> dict[str, tf.Tensor]:
  start = example["targets"][:half]
  n = tf.shape(start)[0]
  length_seed, place_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  length = tf.random.stateless_uniform(
      [], length_seed, minval=tf.minimum(MIN_SEGMENT, n), maxval=n + 1, dtype=tf.int32
  )
  place = tf.random.stateless_uniform(
      [], place_seed, minval=0, maxval=n - length + 1, dtype=tf.int32
  )
  return {**example, "targets": tf.concat([start, start[place : place + length]], axis=0)}


def repeat_span(
    dataset: tf.data.Dataset, sequence_length: Mapping[str, int], output_features
) -> tf.data.Dataset:
  """Each row's targets become their first half-length tokens, then a copy of a random
  segment of them (room left for EOS), so the row fits TASK_FEATURE_LENGTHS["targets"]."""
  length = sequence_length["targets"]
  room = length - 1 if output_features["targets"].add_eos else length
  return _repeat(dataset, half=room // 2)
