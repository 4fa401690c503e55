"""Speech from text with Debian's espeak-ng: a voice drawn per utterance, optional noise.

espeak-ng (formant synthesis, no model files) says every language of the ASR LM text, so
the speech data is built on the machine from text already there, and nothing is downloaded.
Its voice variants (`VARIANTS`), speed and pitch vary the speaker; white or pink noise at
a drawn SNR varies the channel. An utterance's draws come from its own generator
(`utterance_rng`), seeded by a stable hash of (seed, lang, split, index), so a build is the
same for a seed whatever order, or however many processes, make the utterances in.
"""

import dataclasses
import hashlib
import shutil
import subprocess

import numpy as np
from scipy import signal

from model_zoo.errors import UserError
from tasks.asr import audio

ESPEAK = "espeak-ng"
ESPEAK_RATE = 22050  # what espeak-ng writes; 22050 * 320 / 441 = 16000
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")
SPEED_RANGE = (130, 190)  # words per minute, both ends included (espeak-ng's default: 175)
PITCH_RANGE = (25, 75)  # 0..99 (default 50)
NOISE_COLORS = ("white", "pink")


class EspeakMissingError(UserError):
  """espeak-ng, which says the utterances, is not installed."""


@dataclasses.dataclass(frozen=True)
class Voice:
  """An espeak-ng speaker: language, voice variant, speed (words/minute) and pitch (0..99).

  The language code is espeak-ng's voice name: in espeak-ng 1.51 every language of the ASR
  LM text has a voice of its code; "en" is British English and "pt" European Portuguese
  (pt-pt), as the gettext catalogs the text comes from are.
  """

  lang: str
  variant: str
  speed: int
  pitch: int

  def __str__(self) -> str:
    return f"{self.lang}+{self.variant} s={self.speed} p={self.pitch}"


def utterance_rng(seed: int, lang: str, split: str, index: int) -> np.random.Generator:
  """The generator of one utterance's draws: a stable hash of its place, not of build order."""
  key = hashlib.sha256(f"{seed}\x00{lang}\x00{split}\x00{index}".encode("utf-8")).digest()
  return np.random.default_rng(int.from_bytes(key[:16], "little"))


def draw_voice(rng: np.random.Generator, lang: str) -> Voice:
  """A variant, speed and pitch drawn uniformly for a speaker of `lang`."""
  return Voice(
      lang=lang,
      variant=VARIANTS[rng.integers(len(VARIANTS))],
      speed=int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1)),
      pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
  )


def espeak_binary() -> str:
  """The path of espeak-ng, or EspeakMissingError saying how to install it."""
  path = shutil.which(ESPEAK)
  if path is None:
    raise EspeakMissingError(
        f"{ESPEAK} is not on PATH; the ASR speech data is synthesised with it. Install "
        "Debian's espeak-ng: apt-get install espeak-ng"
    )
  return path


def synthesize(text: str, voice: Voice) -> np.ndarray:
  """int16 samples [n] at 16 kHz of `voice` saying `text` (checked by `audio.check_audio`)."""
  command = [espeak_binary(), "-v", f"{voice.lang}+{voice.variant}"]
  command += ["-s", str(voice.speed), "-p", str(voice.pitch), "-b", "1", "--stdout"]
  # The text goes through stdin: as an argument, one that starts with "-" would be a flag.
  result = subprocess.run(command, input=text.encode("utf-8"), capture_output=True, check=False)
  if result.returncode != 0:
    raise RuntimeError(
        f"{' '.join(command)} failed ({result.returncode}): {result.stderr.decode().strip()}"
    )
  wav = audio.read_wav(result.stdout)
  if wav.sample_rate != ESPEAK_RATE:
    raise RuntimeError(f"{ESPEAK} wrote {wav.sample_rate} Hz audio; expected {ESPEAK_RATE} Hz")
  resampled = signal.resample_poly(wav.samples[:, 0].astype(np.float64), 320, 441)
  samples = _to_int16(resampled)
  audio.check_audio(samples, audio.SAMPLE_RATE, 1, f"{voice} saying {text!r}")
  return samples


def add_noise(
    samples: np.ndarray, snr_db: float, rng: np.random.Generator, color: str = "white"
) -> np.ndarray:
  """`samples` plus `color` noise ("white" or "pink", 1/f power) at `snr_db` dB below them.

  The SNR is of mean powers over the whole utterance, pauses included.
  """
  if color not in NOISE_COLORS:
    raise ValueError(f"noise color {color!r}; expected one of {NOISE_COLORS}")
  clean = samples.astype(np.float64)
  noise = rng.standard_normal(len(clean))
  if color == "pink":  # shape white noise's flat spectrum to amplitude 1/sqrt(f)
    spectrum = np.fft.rfft(noise)
    spectrum[0] = 0.0  # no DC offset
    spectrum[1:] /= np.sqrt(np.fft.rfftfreq(len(noise))[1:])
    noise = np.fft.irfft(spectrum, n=len(noise))
  scale = np.sqrt(np.mean(clean**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
  return _to_int16(clean + scale * noise)


def _to_int16(x: np.ndarray) -> np.ndarray:
  return np.clip(np.round(x), -(2**15), 2**15 - 1).astype(np.int16)
