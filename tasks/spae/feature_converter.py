"""The SeqIO converter of `model_zoo.feature_converters.SpaeFeatureConverter` batches.

Task features: "image" float32 [side, side, channels] in [0, 1] and "targets" int32 (the
image's word in the frozen LM's vocabulary). Model features: the image as it is (the task's
"image" length is its side, checked) and "semantic_tokens", the targets 0-padded or cut to
the "targets" length.
"""

from typing import Mapping

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from model_zoo import feature_converters

Spec = seqio.FeatureConverter.FeatureSpec
NUM_CHANNELS = feature_converters.SpaeFeatureConverter.num_channels


class SpaeFeatureConverter(seqio.FeatureConverter):
  """Unpacked (image, word tokens) rows for a semantic pyramid autoencoder."""

  TASK_FEATURES = {
      "image": Spec(dtype=tf.float32, rank=3),
      "targets": Spec(dtype=tf.int32),
  }
  MODEL_FEATURES = {
      "image": Spec(dtype=tf.float32, rank=3),
      "semantic_tokens": Spec(dtype=tf.int32),
  }
  PACKING_FEATURE_DTYPES = {}

  @staticmethod
  def MODEL_FEATURE_TRAILING_DIMS(  # pylint: disable=invalid-name  (tasks.pipeline's name)
      task_feature_lengths: Mapping[str, int],
  ) -> dict[str, tuple[int, ...]]:
    """Dimensions after (batch, length) for tasks.pipeline.model_feature_shapes: an image is
    (side, side, channels) and its length is the side."""
    return {"image": (task_feature_lengths["image"], NUM_CHANNELS)}

  def __init__(self, pack: bool = False, **kwargs):
    if pack:
      _refuse_packing()
    super().__init__(pack=False, **kwargs)

  def _convert_features(
      self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]
  ) -> tf.data.Dataset:
    side = task_feature_lengths["image"]
    _check_side(ds.element_spec["image"].shape, side)

    def convert(features):
      return {
          "image": tf.ensure_shape(features["image"], (side, side, NUM_CHANNELS)),
          "semantic_tokens": features["targets"],
      }

    ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    return seqio.utils.trim_and_pad_dataset(
        ds, {"semantic_tokens": task_feature_lengths["targets"]}
    )

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> dict[str, int]:
    return {
        "image": task_feature_lengths["image"],
        "semantic_tokens": task_feature_lengths["targets"],
    }


def _check_side(shape: tf.TensorShape, side: int) -> None:
  """Fails, naming the setting, when the task's images are not `side` x `side` RGB."""
  from tasks.pipeline import DataError  # here: tasks.pipeline imports this module

  expected = (side, side, NUM_CHANNELS)
  if shape.is_fully_defined() and tuple(shape) != expected:
    raise DataError(
        f"the task's images are {tuple(shape)} but TASK_FEATURE_LENGTHS['image']={side} asks "
        f"for {expected}; set TASK_FEATURE_LENGTHS['image'] to the images' side "
        f"({shape[0]}), e.g. --gin.TASK_FEATURE_LENGTHS=\"{{'image': {shape[0]}, ...}}\""
    )


def _refuse_packing() -> None:
  # Imported here: tasks.pipeline imports this module to list the converter.
  from tasks.pipeline import DataError

  raise DataError(
      "the spae feature converter cannot pack: a row is one image and its word. "
      "Set DatasetConfig.pack=False for the dataset that packs: "
      "--gin.train/DatasetConfig.pack=False (gin/runs/pretrain.gin packs train/ only)."
  )
