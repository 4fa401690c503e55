"""Log-mels against a NumPy STFT and mel filterbank written from the formulas; SpecAugment."""

import numpy as np
import pytest
import tensorflow as tf

from tasks.asr import features

RATE = 16000


def hz_to_mel(hz):
  """The HTK mel scale."""
  return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_filterbank() -> np.ndarray:
  """[FFT_LENGTH // 2 + 1, NUM_MEL_BINS] triangles, equally spaced in mel, the DC bin zero."""
  low, high = features.MEL_RANGE_HZ
  edges = np.linspace(hz_to_mel(low), hz_to_mel(high), features.NUM_MEL_BINS + 2)
  bin_mels = hz_to_mel(np.linspace(0.0, RATE / 2, features.FFT_LENGTH // 2 + 1))[:, None]
  left, center, right = edges[:-2], edges[1:-1], edges[2:]
  rising = (bin_mels - left) / (center - left)
  falling = (right - bin_mels) / (right - center)
  weights = np.maximum(0.0, np.minimum(rising, falling))
  weights[0] = 0.0
  return weights


def reference_log_mel(samples: np.ndarray) -> np.ndarray:
  """Periodic-Hann frames every FRAME_STEP, the last one zero-padded, |rfft|^2, mel, log."""
  length, step = features.FRAME_LENGTH, features.FRAME_STEP
  num_frames = -(-len(samples) // step)
  padded = np.pad(samples.astype(np.float64), (0, (num_frames - 1) * step + length - len(samples)))
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)
  frames = np.stack([padded[i * step : i * step + length] for i in range(num_frames)]) * window
  power = np.abs(np.fft.rfft(frames, n=features.FFT_LENGTH)) ** 2
  return np.log(power @ mel_filterbank() + features.LOG_OFFSET)


def tone(hz: float, seconds: float = 0.5, noise: float = 1e-3) -> np.ndarray:
  t = np.arange(int(seconds * RATE)) / RATE
  rng = np.random.default_rng(0)
  return (0.5 * np.sin(2 * np.pi * hz * t) + noise * rng.standard_normal(len(t))).astype(np.float32)


def test_log_mel_equals_a_numpy_stft_and_filterbank():
  samples = tone(1000.0)[:7999]  # not a whole number of frames: the end is padded
  got = features.log_mel(samples).numpy()
  assert got.dtype == np.float32 and got.shape == (50, features.NUM_MEL_BINS)
  np.testing.assert_allclose(got, reference_log_mel(samples), rtol=1e-4, atol=1e-4)


def test_int16_samples_are_scaled_to_unit_range():
  samples = tone(440.0)
  as_int16 = np.round(samples * 2**15).astype(np.int16)
  np.testing.assert_allclose(
      features.log_mel(as_int16).numpy(),
      reference_log_mel(as_int16 / 2**15),
      rtol=1e-4,
      atol=1e-4,
  )


@pytest.mark.parametrize("hz", [300.0, 1000.0, 3000.0, 6000.0])
def test_a_tone_peaks_in_the_mel_bin_centred_nearest_it(hz):
  low, high = features.MEL_RANGE_HZ
  centers = np.linspace(hz_to_mel(low), hz_to_mel(high), features.NUM_MEL_BINS + 2)[1:-1]
  nearest = int(np.argmin(np.abs(centers - hz_to_mel(hz))))
  energy = features.log_mel(tone(hz)).numpy()[2:-2].mean(axis=0)  # frames away from the edges
  assert int(np.argmax(energy)) == nearest


def test_normalized_log_mels_have_zero_mean_unit_variance_per_bin():
  got = features.log_mel(tone(1000.0, noise=0.05), normalize=True).numpy()
  np.testing.assert_allclose(got.mean(axis=0), 0.0, atol=1e-4)
  np.testing.assert_allclose(got.std(axis=0), 1.0, atol=1e-3)


def zero_runs(mask: np.ndarray) -> list[int]:
  """Lengths of the runs of True in a 1-D bool array."""
  edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
  return list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))


def augment(seed, x, **kw) -> np.ndarray:
  return features.spec_augment(tf.constant(x), tf.constant(seed, tf.int32), **kw).numpy()


def test_spec_augment_masks_at_most_the_stated_bands_and_spans():
  x = np.random.default_rng(0).uniform(1.0, 2.0, (400, 80)).astype(np.float32)
  widths, spans = [], []
  for seed in range(40):
    out = augment([seed, 7], x)
    zero = out == 0
    bins, frames = zero.all(axis=0), zero.all(axis=1)
    np.testing.assert_array_equal(zero, bins[None, :] | frames[:, None])  # whole bands/spans
    np.testing.assert_array_equal(out[~zero], x[~zero])  # the rest untouched
    # Two masks each: at most two runs (overlapping ones merge), at most twice the width.
    assert len(zero_runs(bins)) <= 2 and bins.sum() <= 2 * 27
    assert len(zero_runs(frames)) <= 2 and frames.sum() <= 2 * 20  # 5% of 400 frames
    single = augment([seed, 7], x, num_freq_masks=1, num_time_masks=1) == 0
    assert len(zero_runs(single.all(axis=0))) <= 1 and len(zero_runs(single.all(axis=1))) <= 1
    widths.append(int(single.all(axis=0).sum()))
    spans.append(int(single.all(axis=1).sum()))
  assert max(widths) <= 27 and max(spans) <= 20
  assert max(widths) >= 20 and min(widths) < 10 and max(spans) >= 15  # widths range up to the max
  none = augment([1, 2], x, num_freq_masks=0, num_time_masks=0)
  np.testing.assert_array_equal(none, x)


def test_spec_augment_is_deterministic_for_a_seed():
  x = np.ones((300, 80), np.float32)
  np.testing.assert_array_equal(augment([3, 4], x), augment([3, 4], x))
  assert not np.array_equal(augment([3, 4], x), augment([3, 5], x))
