"""WAV files in, 16 kHz mono int16 samples out, and the checks every utterance passes.

The ASR features (`tasks.asr.features`) assume `SAMPLE_RATE` mono audio: 25 ms frames are
400 samples only at 16 kHz. Audio that breaks that assumption is refused with the command
that fixes it rather than resampled silently, so what the model hears is what the user sent.
"""

import io
import os
import wave
from typing import NamedTuple

import numpy as np

from model_zoo.errors import MissingFileError, UserError

SAMPLE_RATE = 16000
# Peak under -60 dBFS (33 of 32767): no speech, a muted microphone or a failed synthesis.
SILENCE_PEAK = 2**15 * 10 ** (-60 / 20)
_RESAMPLE_HINT = "e.g. sox in.wav -r 16000 -c 1 -b 16 out.wav"


class AudioError(UserError, ValueError):
  """Audio that is not 16 kHz mono int16 speech; the message names the file and the fix."""


class Wav(NamedTuple):
  """A WAV file's int16 samples [frames, channels] and its sample rate."""

  samples: np.ndarray
  sample_rate: int

  @property
  def channels(self) -> int:
    return self.samples.shape[1]


def read_wav(path_or_bytes: str | os.PathLike | bytes) -> Wav:
  """The samples of a 16-bit PCM WAV file (a path or its bytes), with its sample rate.

  Reads to the end of the data, so a header that does not know its length (espeak-ng
  --stdout writes one) is fine.
  """
  where = _name(path_or_bytes)
  source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else where
  if not isinstance(path_or_bytes, bytes) and not os.path.isfile(where):
    raise MissingFileError(f"{where}: no such audio file; give the path of a 16 kHz mono WAV file.")
  try:
    with wave.open(source, "rb") as f:
      if f.getsampwidth() != 2:
        raise AudioError(
            f"{where}: {8 * f.getsampwidth()}-bit samples; expected 16-bit PCM. Convert it, "
            f"{_RESAMPLE_HINT}"
        )
      channels, rate = f.getnchannels(), f.getframerate()
      data = b"".join(iter(lambda: f.readframes(1 << 16), b""))
  except (wave.Error, EOFError) as e:
    raise AudioError(f"{where}: not a readable PCM WAV file ({e})") from e
  usable = len(data) - len(data) % (2 * channels)  # a stream cut inside its last frame
  samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
  return Wav(samples.reshape(-1, channels), rate)


def check_audio(samples: np.ndarray, sample_rate: int, channels: int, where: str) -> None:
  """Refuses audio that is not 16 kHz mono speech, naming `where` (the file or utterance)."""
  if sample_rate != SAMPLE_RATE:
    raise AudioError(
        f"{where}: sample rate {sample_rate} Hz; expected {SAMPLE_RATE} Hz. Resample it, "
        f"{_RESAMPLE_HINT}"
    )
  if channels != 1:
    raise AudioError(f"{where}: {channels} channels; expected mono. Mix it down, {_RESAMPLE_HINT}")
  if np.size(samples) == 0:
    raise AudioError(f"{where}: no samples; expected speech. Check the file was written whole.")
  peak = float(np.max(np.abs(np.asarray(samples, np.float64))))
  if peak < SILENCE_PEAK:
    raise AudioError(
        f"{where}: silent (peak {peak:.0f} of 32767, under -60 dBFS); expected speech. Check "
        "the recording's input and level."
    )


def load_wav(path_or_bytes: str | os.PathLike | bytes) -> np.ndarray:
  """int16 samples [n] of a 16 kHz mono WAV file, after `check_audio`."""
  wav = read_wav(path_or_bytes)
  check_audio(wav.samples, wav.sample_rate, wav.channels, _name(path_or_bytes))
  return wav.samples[:, 0]


def _name(path_or_bytes: str | os.PathLike | bytes) -> str:
  return "<WAV bytes>" if isinstance(path_or_bytes, bytes) else os.fspath(path_or_bytes)
