"""The SeqIO converter of `model_zoo.feature_converters.PrefixScorerFeatureConverter` batches.

SeqIO's prefix-LM layout of (inputs, targets), built by SeqIO's own converter so the two never
drift, plus `decoder_rewards`: each row's reward at its non-padding positions. The reward
rides through that converter as a pass-through feature (one float per row), so it stays in
the same tf.data element as its tokens: however the task shuffles or a mixture samples, a
reward is never paired with another row's tokens.
"""

from typing import Mapping

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

Spec = seqio.FeatureConverter.FeatureSpec
# As the prefix-LM converter's pass-through feature: rank 1, one value per row.
_REWARD = {"rewards": Spec(dtype=tf.float32, rank=1)}


class PrefixScorerFeatureConverter(seqio.FeatureConverter):
  """Unpacked prefix-LM rows (inputs = prompt, targets = rollout) with `decoder_rewards`."""

  TASK_FEATURES = {
      **seqio.PrefixLMFeatureConverter.TASK_FEATURES,
      "rewards": Spec(dtype=tf.float32, rank=0),
  }
  MODEL_FEATURES = {
      **seqio.PrefixLMFeatureConverter.MODEL_FEATURES,
      "decoder_rewards": Spec(dtype=tf.float32),
  }
  PACKING_FEATURE_DTYPES = {}

  def __init__(self, pack: bool = False, **kwargs):
    if pack:
      _refuse_packing()
    super().__init__(pack=False, **kwargs)
    self._prefix_lm = seqio.PrefixLMFeatureConverter(
        pack=False,
        apply_length_check=self._apply_length_check,
        bos_id=self.bos_id,
        passthrough_features=_REWARD,
    )

  def __call__(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]):
    """Converts with lengths for "inputs" and "targets" only: a reward is one number."""
    return super().__call__(ds, _with_reward_length(task_feature_lengths))

  def _convert_features(self, ds, task_feature_lengths):
    ds = ds.map(lambda ex: {**ex, "rewards": tf.reshape(ex["rewards"], [1])})
    ds = self._prefix_lm(ds, task_feature_lengths)
    return ds.map(_spread_reward, num_parallel_calls=tf.data.AUTOTUNE)

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> dict[str, int]:
    lengths = dict(
        self._prefix_lm.get_model_feature_lengths(_with_reward_length(task_feature_lengths))
    )
    del lengths["rewards"]
    return {**lengths, "decoder_rewards": lengths["decoder_target_tokens"]}


def _with_reward_length(task_feature_lengths: Mapping[str, int]) -> dict[str, int]:
  """The lengths with the one-value "rewards" feature's, which SeqIO's checks ask for."""
  return {**task_feature_lengths, "rewards": 1}


def _spread_reward(ex: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """The row's reward at every non-padding target position, 0.0 in padding."""
  features = dict(ex)
  reward = features.pop("rewards")[0]
  padding = features["decoder_target_tokens"] == 0
  features["decoder_rewards"] = tf.where(padding, 0.0, tf.fill(tf.shape(padding), reward))
  return features


def _refuse_packing() -> None:
  # Imported here: tasks.pipeline imports this module to list the converter.
  from tasks.pipeline import DataError

  raise DataError(
      "the prefix_scorer feature converter cannot pack: a reward belongs to one rollout, and a "
      "packed row would hold several. Set DatasetConfig.pack=False for the dataset that packs: "
      "--gin.train/DatasetConfig.pack=False (gin/runs/pretrain.gin packs train/ only)."
  )
