"""Which sentences each split of the speech data says, per language, and the predefined sizes.

Every transcript is a line of the ASR LM text (`tasks.asr_lm.corpus`), so it is in spoken
form already and the LM used in shallow fusion models exactly what the ASR model emits.
Lines longer than `SpeechConfig.max_words` words are left out (long audio). A line's place
is fixed by its sha256, never by chance, so every build picks the same lines:

- "train": the ASR LM train lines first in sha256 order, at most N per language.
- "validation" / "test": the two halves (by sha256) of the ASR LM validation lines, which
  no LM trains on; "validation" tunes decoding (e.g. shallow-fusion weights), "test"
  scores it.
- "test_rare": the lines of the test half (capped separately) holding a word that the ASR
  train transcripts lack but the ASR LM train text has: the long tail, where an LM
  trained on more text than the acoustic model heard should help most.
"""

import dataclasses
import hashlib
from typing import Mapping

from model_zoo.errors import ConfigError
from tasks.asr_lm import corpus

SPLITS = ("train", "validation", "test", "test_rare")


@dataclasses.dataclass(frozen=True)
class SpeechConfig:
  """One size of the speech data; `utterances` maps a split to its most utterances per
  language (None: every line that qualifies)."""

  name: str
  description: str
  languages: tuple[str, ...]
  utterances: Mapping[str, int | None]
  seed: int = 0
  noise_probability: float = 0.5  # the rest are clean
  snr_db: tuple[float, float] = (10.0, 30.0)  # drawn uniformly per noisy utterance
  max_words: int = 16


CONFIGS = {
    config.name: config
    for config in (
        SpeechConfig(
            name="tiny",
            description="English and German, a few utterances each: for tests (seconds).",
            languages=("en", "de"),
            utterances={"train": 12, "validation": 4, "test": 4, "test_rare": 4},
        ),
        SpeechConfig(
            name="default",
            description="Four languages, 600 train utterances each (minutes to build).",
            languages=("en", "de", "fr", "es"),
            utterances={"train": 600, "validation": 100, "test": 100, "test_rare": None},
        ),
        SpeechConfig(
            name="full",
            description="All eight languages, 2,000 train utterances each, every held-out line.",
            languages=corpus.LANGUAGES,
            # Not every train line: an LM must have seen words the ASR model has not, or
            # test_rare is empty (~30-70 per language with 2,000; ~1-8 with all ~3,500).
            utterances={"train": 2000, "validation": None, "test": None, "test_rare": None},
        ),
    )
}


def get_config(name: str) -> SpeechConfig:
  """The predefined config `name` (a key of `CONFIGS`)."""
  if name not in CONFIGS:
    raise ConfigError(f"no speech data config {name!r}; choose one of {sorted(CONFIGS)}")
  return CONFIGS[name]


def split_texts(config: SpeechConfig, lang: str, split: str) -> tuple[str, ...]:
  """The transcripts of `lang` in `split`, in sha256 order (an utterance's index is its place)."""
  if split not in SPLITS:
    raise ConfigError(f"the speech data has splits {SPLITS}; got {split!r}")
  if split == "train":
    lines = _short(config, corpus.split_lines(lang, "train"))
  elif split == "test_rare":
    heard = {word for line in split_texts(config, lang, "train") for word in line.split()}
    known = {word for line in corpus.split_lines(lang, "train") for word in line.split()}
    rare = known - heard
    lines = [line for line in _held_out_half(config, lang, "test") if rare & set(line.split())]
  else:
    lines = _held_out_half(config, lang, split)
  return tuple(lines[: config.utterances[split]])


def fingerprint(config: SpeechConfig) -> str:
  """A short hash of the config and its languages' ASR LM text: changes when either does."""
  key = hashlib.sha256(repr(dataclasses.astuple(config)).encode("utf-8"))
  for lang in config.languages:
    for split in corpus.SPLITS:
      key.update("\n".join(corpus.split_lines(lang, split)).encode("utf-8") + b"\x00")
  return key.hexdigest()[:10]


def _digest(line: str) -> bytes:
  return hashlib.sha256(line.encode("utf-8")).digest()


def _short(config: SpeechConfig, lines: tuple[str, ...]) -> list[str]:
  """The lines of at most `max_words` words, in sha256 order."""
  return sorted((line for line in lines if len(line.split()) <= config.max_words), key=_digest)


def _held_out_half(config: SpeechConfig, lang: str, half: str) -> list[str]:
  """The ASR LM validation lines whose sha256 puts them in `half` ("validation" or "test")."""
  lines = _short(config, corpus.split_lines(lang, "validation"))
  return [line for line in lines if (_digest(line)[-1] & 1) == (half == "test")]
