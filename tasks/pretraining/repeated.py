"""Repeated spans: the catalog text with each row's span written twice.

An LM learns to copy from its context (induction: after "... A B ... A", predict B) within a
few hundred steps on such rows, because the second copy is nearly free to predict once it
does; on plain text a tiny LM takes far longer. In-context use of a frozen LM (SPAE's few-shot
classification, model_zoo/spae/in_context.py) rests on that skill, so a tiny LM trained on
these rows can stand in for a large one in tests and CPU experiments.
"""

from typing import Mapping

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf


@seqio.map_over_dataset
def _repeat(example: Mapping[str, tf.Tensor], half: int) -> dict[str, tf.Tensor]:
  span = example["targets"][:half]
  return {**example, "targets": tf.concat([span, span], axis=0)}


def repeat_span(
    dataset: tf.data.Dataset, sequence_length: Mapping[str, int], output_features
) -> tf.data.Dataset:
  """Each row's targets become their first half-length span twice (room left for EOS), so
  the row fits TASK_FEATURE_LENGTHS["targets"] whole."""
  length = sequence_length["targets"]
  room = length - 1 if output_features["targets"].add_eos else length
  return _repeat(dataset, half=room // 2)
