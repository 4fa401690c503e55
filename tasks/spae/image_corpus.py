"""Which images each split of the SPAE image data holds, and the predefined sizes.

A config draws from one or both sources; an example is an image, its word, its class
(`label`), the word's language, an id and a `source` that says what the image was drawn from:

- digits: scikit-learn's 1,797 handwritten 8x8 digits (`images.load_digits`), each once per
  language of `Digits.languages`, its word the digit's name there (num2words: "seven",
  "sieben", "sept"); the label is the digit in every language. Each digit's images are split
  by sha256 of (seed, index), never by chance: `held_out` of them to validation, as many to
  test, the rest to train, so every split holds every digit and no source image is in two
  splits. `source` is "digits[<index>]".
- words: the words of `Words.words` rendered in the system's TrueType fonts; the label is the
  word's place in the list (after the ten digits when the config has both). The fonts are
  split too: `held_out_fonts` of them (those whose file names hash lowest) render only the
  validation and test words, so held-out images are in typefaces train never shows (and
  drawn from other seeds). `source` is "<font file> <size> px".

Colours, font, size and position are drawn from the example's own generator, seeded by
(seed, id), so a build is the same whatever order it draws the examples in.
"""

import dataclasses
import functools
import hashlib
import importlib.metadata
import pathlib
from typing import Mapping

import numpy as np
from num2words import num2words

from model_zoo.errors import ConfigError
from tasks.spae import images

SPLITS = ("train", "validation", "test")
NUM_DIGITS = 10
# Eight everyday nouns per language, picked by hand among the 200 most frequent words of its
# train messages (tasks.parallel.corpus.monolingual(lang, "train"): from 305 occurrences of
# "keys" down to 23 of "page"): 3-5 letters, lowercase (German nouns capitalised), one or two
# pieces of the pretraining vocabulary, one form per noun ("keys", not also "key"), distinct
# across the languages ignoring case (so no de "Text", fr "type" or es "color"). Every one
# fits a 32-pixel image at 9 px or more in every DejaVu font.
WORDS = (
    *(("en", w) for w in ("keys", "file", "name", "level", "color", "type", "text", "space")),
    *(("de", w) for w in ("Datei", "Taste", "Typ", "Farbe", "Tag", "Kind", "Pixel", "Menü")),
    *(("fr", w) for w in ("nom", "texte", "fils", "menu", "plan", "liste", "mode", "page")),
    *(("es", w) for w in ("tipo", "valor", "texto", "hijo", "nivel", "barra", "tecla", "botón")),
)


@dataclasses.dataclass(frozen=True)
class Digits:
  """The sklearn digits, each image once per language; `per_class` caps each digit's
  images in each split (None: all of them)."""

  languages: tuple[str, ...] = ("en", "de", "fr")
  held_out: float = 0.15  # of each digit's images to validation, and as many to test
  per_class: int | None = None


@dataclasses.dataclass(frozen=True)
class Words:
  """Rendered words: `renderings` maps a split to the images of each word in it."""

  words: tuple[tuple[str, str], ...] = WORDS  # (language, word)
  renderings: Mapping[str, int] = dataclasses.field(
      default_factory=lambda: {"train": 200, "validation": 25, "test": 25}
  )
  fonts: str = "DejaVu*.ttf"  # file names under images.FONT_DIR
  held_out_fonts: float = 0.25  # the share of the fonts that only the held-out splits use
  font_sizes: tuple[int, int] = (9, 22)  # drawn uniformly (both included), then shrunk to fit


@dataclasses.dataclass(frozen=True)
class ImageConfig:
  """One size of the image data: digits, words or both, in `side` x `side` RGB."""

  name: str
  description: str
  side: int = 32
  digits: Digits | None = None
  words: Words | None = None
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class Entry:
  """One example to draw: `digit` is its sklearn index (None for a rendered word)."""

  id: str
  word: str
  label: int
  lang: str
  split: str
  digit: int | None = None


CONFIGS = {
    config.name: config
    for config in (
        ImageConfig(
            name="tiny",
            description="Two digits of each class per split in en and de, and 4 rendered words "
            "(one per language): for tests (seconds).",
            digits=Digits(languages=("en", "de"), per_class=2),
            words=Words(words=WORDS[::8], renderings={"train": 3, "validation": 2, "test": 2}),
        ),
        ImageConfig(
            name="digits",
            description="The 1,797 sklearn digits, each with its name in English, German and "
            "French; ~70/15/15% of each digit's images to train/validation/test.",
            digits=Digits(),
        ),
        ImageConfig(
            name="words",
            description="32 frequent catalog nouns in en/de/fr/es, rendered 200 times each for "
            "train and 25 each for validation and test in held-out fonts.",
            words=Words(),
        ),
    )
}


def get_config(name: str) -> ImageConfig:
  """The predefined config `name` (a key of `CONFIGS`)."""
  if name not in CONFIGS:
    raise ConfigError(f"no SPAE image data config {name!r}; choose one of {sorted(CONFIGS)}")
  return CONFIGS[name]


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ConfigError(f"the SPAE image data has splits {SPLITS}; got {split!r}")


def _digest(*parts) -> bytes:
  return hashlib.sha256("\x00".join(map(str, parts)).encode("utf-8")).digest()


def digit_indices(config: ImageConfig, split: str) -> tuple[int, ...]:
  """The sklearn indices of `split`'s digit images, ascending."""
  _check_split(split)
  _, labels = images.load_digits()
  chosen = []
  for digit in range(NUM_DIGITS):
    members = sorted(np.flatnonzero(labels == digit), key=lambda i: _digest(config.seed, i))
    held = round(len(members) * config.digits.held_out)
    parts = {"validation": members[:held], "test": members[held : 2 * held]}
    chosen += parts.get(split, members[2 * held :])[: config.digits.per_class]
  return tuple(sorted(int(i) for i in chosen))


def split_fonts(words: Words, split: str) -> tuple[pathlib.Path, ...]:
  """The fonts that render `split`'s words: the held-out ones for validation and test."""
  _check_split(split)
  train, held_out = _font_split(words.fonts, words.held_out_fonts, images.FONT_DIR)
  return train if split == "train" else held_out


@functools.cache
def _font_split(
    pattern: str, held_out_share: float, font_dir: pathlib.Path
) -> tuple[tuple[pathlib.Path, ...], ...]:
  """(train fonts, held-out fonts): the `held_out_share` whose file names hash lowest held out."""
  fonts = images.require_fonts(pattern, font_dir)
  if len(fonts) < 2:
    raise ConfigError(
        f"rendered words need two fonts or more (train and held-out ones); found only "
        f"{fonts[0]}: install Debian's {images.FONT_PACKAGE}"
    )
  by_hash = sorted(fonts, key=lambda font: _digest(font.name))
  held_out = set(by_hash[: max(1, round(len(fonts) * held_out_share))])
  return (
      tuple(font for font in fonts if font not in held_out),
      tuple(font for font in fonts if font in held_out),
  )


def num_classes(config: ImageConfig) -> int:
  return (NUM_DIGITS if config.digits else 0) + (len(config.words.words) if config.words else 0)


def entries(config: ImageConfig, split: str) -> tuple[Entry, ...]:
  """`split`'s examples: digits language after language, then the words' renderings."""
  _check_split(split)
  found = []
  if config.digits:
    _, labels = images.load_digits()
    for lang in config.digits.languages:
      for index in digit_indices(config, split):
        label = int(labels[index])
        word = num2words(label, lang=lang)
        found.append(Entry(f"{lang}-{split}-digit{index:04d}", word, label, lang, split, index))
  if config.words:
    offset = NUM_DIGITS if config.digits else 0
    for position, (lang, word) in enumerate(config.words.words):
      for rendering in range(config.words.renderings[split]):
        uid = f"{lang}-{split}-word{position:02d}-{rendering:03d}"
        found.append(Entry(uid, word, offset + position, lang, split))
  return tuple(found)


def make_example(config: ImageConfig, entry: Entry) -> dict:
  """The example of `entry`: uint8 image, word, label, language, id and source."""
  rng = images.example_rng(config.seed, entry.id)
  if entry.digit is not None:
    grey, _ = images.load_digits()
    image = images.digit_image(grey[entry.digit], config.side, rng)
    source = f"digits[{entry.digit}]"
  else:
    fonts = split_fonts(config.words, entry.split)
    font = fonts[rng.integers(len(fonts))]
    size = int(rng.integers(config.words.font_sizes[0], config.words.font_sizes[1] + 1))
    image, size = images.word_image(entry.word, font, size, config.side, rng)
    source = f"{font.name} {size} px"
  return {
      "image": image,
      "word": entry.word,
      "label": entry.label,
      "lang": entry.lang,
      "id": entry.id,
      "source": source,
  }


@functools.cache
def _fonts_digest(pattern: str, font_dir: pathlib.Path) -> str:
  digest = hashlib.sha256()
  for font in images.find_fonts(pattern, font_dir):
    digest.update(font.name.encode("utf-8") + b"\x00" + font.read_bytes())
  return digest.hexdigest()


def fingerprint(config: ImageConfig) -> str:
  """A short hash of the config, the drawing rules and what the images are drawn from (the
  fonts' bytes; scikit-learn's version for its digits): changes when any of them does."""
  key = hashlib.sha256(repr((dataclasses.astuple(config), images.DRAWING_VERSION)).encode())
  if config.digits:
    try:
      key.update(importlib.metadata.version("scikit-learn").encode())
    except importlib.metadata.PackageNotFoundError:
      pass  # the build names the package to install
  if config.words:
    key.update(_fonts_digest(config.words.fonts, images.FONT_DIR).encode())
  return key.hexdigest()[:10]
