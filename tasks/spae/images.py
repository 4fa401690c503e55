"""Images whose content is a word, drawn offline: scikit-learn's digits and rendered words.

NumPy and Pillow only (no TensorFlow), so the drawing is testable on its own. Every draw
(colours, font size, position) comes from a generator the caller seeds per example
(`example_rng`), so an image depends on its seed alone, not on build order. Images are uint8
[side, side, 3] RGB: a light background with dark ink or the reverse, each channel of the
light colour in LIGHT and of the dark one in DARK, so ink and background always differ by at
least 80 levels in every channel, whatever the hues.
"""

import functools
import hashlib
import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model_zoo.errors import ConfigError

FONT_DIR = pathlib.Path("/usr/share/fonts")
# Sans, Serif and Mono, regular and bold; fonts-dejavu-extra adds 16 oblique, condensed and
# light styles (20 fonts render words where both are installed, as .ci/run installs them).
FONT_PACKAGE = "fonts-dejavu-core"
# Not for words: a maths font, and strokes too thin to survive 32 pixels.
EXCLUDED_FONTS = ("DejaVuMathTeXGyre.ttf", "DejaVuSans-ExtraLight.ttf")
LIGHT = (160, 256)  # per-channel range of the light colour (high end excluded)
DARK = (0, 80)
MARGIN = 1  # pixels of background that every word keeps from the image border
MIN_FONT_SIZE = 6  # below this a word is not legible: refuse rather than draw it
DIGIT_LEVELS = 16  # the digits' grey levels are 0..16
# Bump when a change draws different images: part of every config's fingerprint.
DRAWING_VERSION = 1


def example_rng(seed: int, key: str) -> np.random.Generator:
  """The generator of one example's draws: a stable hash of (seed, its id)."""
  digest = hashlib.sha256(f"{seed}\x00{key}".encode("utf-8")).digest()
  return np.random.default_rng(int.from_bytes(digest[:16], "little"))


@functools.cache
def load_digits() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's 1,797 handwritten digits: grey levels uint8 [n, 8, 8] in 0..16, labels [n].

  They ship inside scikit-learn's wheel (UCI "Optical Recognition of Handwritten Digits",
  CC BY 4.0): nothing is downloaded.
  """
  try:
    from sklearn import datasets  # pylint: disable=g-import-not-at-top  (1.5 s; builds only)
  except ImportError as e:
    raise ConfigError(
        "the digit images come with scikit-learn, which is not installed: "
        "pip install 'scikit-learn>=1.4' (or the [tasks] extra: pip install -e '.[tasks]')"
    ) from e
  digits = datasets.load_digits()
  return digits.images.astype(np.uint8), digits.target.astype(np.int64)


def find_fonts(pattern: str, font_dir: str | pathlib.Path = FONT_DIR) -> tuple[pathlib.Path, ...]:
  """The TrueType fonts under `font_dir` whose file name matches `pattern`, by file name."""
  fonts = {
      path.name: path
      for path in pathlib.Path(font_dir).glob(f"**/{pattern}")
      if path.is_file() and path.name not in EXCLUDED_FONTS
  }
  return tuple(fonts[name] for name in sorted(fonts))


def require_fonts(
    pattern: str, font_dir: str | pathlib.Path = FONT_DIR
) -> tuple[pathlib.Path, ...]:
  """`find_fonts`, failing with the package to install when there is none."""
  fonts = find_fonts(pattern, font_dir)
  if not fonts:
    raise ConfigError(
        f"no TrueType font {pattern!r} under {font_dir} to render words with; install "
        f"Debian's {FONT_PACKAGE} (apt-get install {FONT_PACKAGE})"
    )
  return fonts


def draw_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(ink, background) RGB: one light and one dark colour, which is which drawn too."""
  light = rng.integers(*LIGHT, size=3)
  dark = rng.integers(*DARK, size=3)
  return (dark, light) if rng.random() < 0.5 else (light, dark)


def _paint(coverage: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Ink over background in proportion to `coverage` (float [side, side] in [0, 1])."""
  ink, background = draw_colors(rng)
  alpha = coverage[..., None]
  return np.rint(alpha * ink + (1.0 - alpha) * background).astype(np.uint8)


def digit_image(grey: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
  """An 8x8 digit (levels 0..16) upscaled bilinearly to side x side, in drawn colours."""
  coverage = Image.fromarray(grey.astype(np.float32) / DIGIT_LEVELS)
  coverage = np.asarray(coverage.resize((side, side), Image.Resampling.BILINEAR))
  return _paint(np.clip(coverage, 0.0, 1.0), rng)


def _ink(word: str, font: ImageFont.FreeTypeFont) -> np.ndarray:
  """The word's coverage in [0, 1], cropped to its inked pixels."""
  size = font.size
  canvas = Image.new("L", (int(font.getlength(word)) + 2 * size, 3 * size))
  ImageDraw.Draw(canvas).text((size, size), word, font=font, fill=255)
  return np.asarray(canvas.crop(canvas.getbbox())).astype(np.float32) / 255.0


def word_image(
    word: str, font: str | pathlib.Path, size: int, side: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
  """`word` in `font` at `size` pixels, shrunk until it fits inside a MARGIN, at a drawn
  place, in drawn colours; returns the image and the size drawn."""
  room = side - 2 * MARGIN
  while True:
    if size < MIN_FONT_SIZE:
      raise ConfigError(
          f"{word!r} does not fit a {side}x{side} image at {MIN_FONT_SIZE} px or more in "
          f"{pathlib.Path(font).name}; choose a shorter word or larger images"
      )
    ink = _ink(word, ImageFont.truetype(str(font), size))
    if ink.shape[0] <= room and ink.shape[1] <= room:
      break
    size -= 1
  top = MARGIN + int(rng.integers(room - ink.shape[0] + 1))
  left = MARGIN + int(rng.integers(room - ink.shape[1] + 1))
  coverage = np.zeros((side, side), np.float32)
  coverage[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
  return _paint(coverage, rng), size
