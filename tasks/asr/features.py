"""Log-mel features and SpecAugment, as TensorFlow ops for the SeqIO pipeline.

`log_mel`: 25 ms Hann-windowed frames every 10 ms (`tf.signal.stft`, the end zero-padded
so every sample is in a frame: ceil(n / 160) frames), power spectrum, `NUM_MEL_BINS`
triangular HTK-mel filters over `MEL_RANGE_HZ` (`tf.signal.linear_to_mel_weight_matrix`),
natural log of (power + `LOG_OFFSET`). int16 samples are scaled to [-1, 1) first.

With `normalize=True`, each mel bin is then shifted and scaled to mean 0, variance 1 over
the utterance's frames (per-utterance CMVN): it removes the channel's gain and spectral
tilt (loudness, microphone, the synthesiser's voice), which say nothing about the words,
and it makes SpecAugment's zero masks the utterance's mean.

`spec_augment` (Park et al., 2019) masks random mel bands and time spans, with stateless
random ops, so a SeqIO seed (`seqio.map_over_dataset(num_seeds=1)`) makes it repeatable.
"""

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import numpy as np
import tensorflow as tf

from model_zoo import feature_converters
from tasks.asr.audio import SAMPLE_RATE, load_wav

NUM_MEL_BINS = feature_converters.AsrFeatureConverter.num_mel_bins  # the model's layout
FRAME_LENGTH = 400  # 25 ms at 16 kHz
FRAME_STEP = 160  # 10 ms
FFT_LENGTH = 512
MEL_RANGE_HZ = (20.0, 7600.0)
LOG_OFFSET = 1e-6
_VARIANCE_EPSILON = 1e-6


def log_mel(samples: tf.Tensor, *, normalize: bool = False) -> tf.Tensor:
  """float32 [frames, NUM_MEL_BINS] of 16 kHz samples [n] (int16, or float in [-1, 1))."""
  samples = tf.convert_to_tensor(samples)
  if samples.dtype == tf.int16:
    samples = tf.cast(samples, tf.float32) / 2.0**15
  stft = tf.signal.stft(
      tf.cast(samples, tf.float32),
      frame_length=FRAME_LENGTH,
      frame_step=FRAME_STEP,
      fft_length=FFT_LENGTH,
      window_fn=tf.signal.hann_window,
      pad_end=True,
  )
  power = tf.square(tf.abs(stft))
  filters = tf.signal.linear_to_mel_weight_matrix(
      NUM_MEL_BINS, FFT_LENGTH // 2 + 1, SAMPLE_RATE, *MEL_RANGE_HZ
  )
  features = tf.math.log(tf.matmul(power, filters) + LOG_OFFSET)
  if normalize:
    mean, variance = tf.nn.moments(features, axes=[0], keepdims=True)
    features = (features - mean) * tf.math.rsqrt(variance + _VARIANCE_EPSILON)
  return features


def utterance_frames(path: str) -> np.ndarray:
  """The normalised log-mels [frames, NUM_MEL_BINS] of a 16 kHz mono WAV file, as the ASR
  tasks compute them from their audio (what a model's prompt from a user's file is)."""
  return log_mel(load_wav(path), normalize=True).numpy()


def spec_augment(
    features: tf.Tensor,
    seed: tf.Tensor,
    *,
    num_freq_masks: int = 2,
    max_freq_width: int = 27,
    num_time_masks: int = 2,
    max_time_fraction: float = 0.05,
) -> tf.Tensor:
  """`features` [frames, bins] with bands and spans set to 0, drawn from `seed` (int32 [2]).

  Each of `num_freq_masks` bands is 0..`max_freq_width` bins wide (27 of 80 is the
  LibriSpeech policy's F); each of `num_time_masks` spans is 0..`max_time_fraction` of
  the utterance's frames long (adaptive time masks, so short utterances keep their words).
  Start positions are uniform over the places the mask fits; masks may overlap.
  """
  frames, bins = tf.shape(features)[0], tf.shape(features)[1]
  seeds = tf.random.experimental.stateless_split(seed, num_freq_masks + num_time_masks)
  max_time_width = tf.cast(tf.cast(frames, tf.float32) * max_time_fraction, tf.int32)
  masked_bins = tf.zeros([bins], tf.bool)
  for i in range(num_freq_masks):
    masked_bins |= _band(seeds[i], bins, tf.constant(max_freq_width))
  masked_frames = tf.zeros([frames], tf.bool)
  for i in range(num_freq_masks, num_freq_masks + num_time_masks):
    masked_frames |= _band(seeds[i], frames, max_time_width)
  masked = masked_frames[:, None] | masked_bins[None, :]
  return tf.where(masked, tf.zeros_like(features), features)


def _band(seed: tf.Tensor, size: tf.Tensor, max_width: tf.Tensor) -> tf.Tensor:
  """bool [size]: True on one band of width uniform in 0..max_width at a uniform start."""
  width_seed, start_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  width = tf.random.stateless_uniform(
      [], width_seed, minval=0, maxval=tf.minimum(max_width, size) + 1, dtype=tf.int32
  )
  start = tf.random.stateless_uniform(
      [], start_seed, minval=0, maxval=size - width + 1, dtype=tf.int32
  )
  positions = tf.range(size)
  return (positions >= start) & (positions < start + width)
