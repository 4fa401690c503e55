"""The SeqIO converter of `model_zoo.feature_converters.AsrFeatureConverter` batches.

Task features: "inputs" float32 [frames, NUM_MEL_BINS] (log-mels) and "targets" int32
token ids. Model features: the frames padded to the inputs length with a mask of the real
ones, and the decoder features exactly as SeqIO's unpacked encoder-decoder converter makes
them (the decoder input is the targets shifted right behind a 0).
"""

from typing import Mapping

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from tasks.asr.features import NUM_MEL_BINS

Spec = seqio.FeatureConverter.FeatureSpec


class AsrFeatureConverter(seqio.FeatureConverter):
  """Unpacked (log-mel frames, transcript tokens) rows for a speech encoder-decoder."""

  TASK_FEATURES = {
      "inputs": Spec(dtype=tf.float32, rank=2),
      "targets": Spec(dtype=tf.int32),
  }
  MODEL_FEATURES = {
      "encoder_input_features": Spec(dtype=tf.float32, rank=2),
      "encoder_input_mask": Spec(dtype=tf.int32),
      "decoder_input_tokens": Spec(dtype=tf.int32),
      "decoder_target_tokens": Spec(dtype=tf.int32),
      "decoder_loss_weights": Spec(dtype=tf.int32),
  }
  PACKING_FEATURE_DTYPES = {}
  # Dimensions after (batch, length): tasks.pipeline.model_feature_shapes appends them.
  MODEL_FEATURE_TRAILING_DIMS = {"encoder_input_features": (NUM_MEL_BINS,)}

  def __init__(self, pack: bool = False, **kwargs):
    if pack:
      _refuse_packing()
    super().__init__(pack=False, **kwargs)

  def _convert_features(
      self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]
  ) -> tf.data.Dataset:
    """Pads, then shifts the padded targets, as SeqIO's EncDecFeatureConverter does."""

    def with_mask(features):
      frames = tf.shape(features["inputs"])[0]
      return {
          "inputs": features["inputs"],
          "inputs_mask": tf.ones([frames], tf.int32),
          "targets": features["targets"],
      }

    def convert(features):
      targets = features["targets"]
      return {
          "encoder_input_features": features["inputs"],
          "encoder_input_mask": features["inputs_mask"],
          "decoder_input_tokens": seqio.utils.make_autoregressive_inputs(
              targets, bos_id=self.bos_id
          ),
          "decoder_target_tokens": targets,
          "decoder_loss_weights": seqio.feature_converters.non_padding_position(targets),
      }

    lengths = {**task_feature_lengths, "inputs_mask": task_feature_lengths["inputs"]}
    ds = ds.map(with_mask, num_parallel_calls=tf.data.AUTOTUNE)
    ds = seqio.utils.trim_and_pad_dataset(ds, lengths)
    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> dict[str, int]:
    frames, tokens = task_feature_lengths["inputs"], task_feature_lengths["targets"]
    return {
        "encoder_input_features": frames,
        "encoder_input_mask": frames,
        "decoder_input_tokens": tokens,
        "decoder_target_tokens": tokens,
        "decoder_loss_weights": tokens,
    }


def _refuse_packing() -> None:
  # Imported here: tasks.pipeline imports this module to list the converter.
  from tasks.pipeline import DataError

  raise DataError(
      "the asr feature converter cannot pack: an encoder row holds one utterance's frames. "
      "Set DatasetConfig.pack=False for the dataset that packs: "
      "--gin.train/DatasetConfig.pack=False (gin/runs/pretrain.gin packs train/ only)."
  )
