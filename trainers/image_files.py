"""Image files in and out of the SPAE command line: checked on the way in, written whole.

Pillow comes with podzoo's [tasks] extra (the SPAE data draws its images with it); it is
imported when an image is read or written, so the rest of the core does not need it.
"""

import os
from typing import Sequence

import numpy as np

from model_zoo.errors import ConfigError, MissingFileError


def _pillow():
  try:
    from PIL import Image  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ConfigError("reading and writing images needs Pillow: pip install -e '.[tasks]'") from e
  return Image


def read_image(path: str, side: int, channels: int = 3) -> np.ndarray:
  """The image at `path` as float32 [side, side, channels] in [0, 1]; a file that is not an
  image, has other channels or another size is refused, saying what to change."""
  image_lib = _pillow()
  if not os.path.isfile(path):
    raise MissingFileError(f"no image file {path}")
  try:
    with image_lib.open(path) as image:
      image.load()
      mode, size = image.mode, image.size
      pixels = np.asarray(image)
  except (OSError, SyntaxError, ValueError) as e:  # Pillow's "cannot identify image file"
    raise ConfigError(f"{path} is not an image Pillow can read (PNG, JPEG, ...): {e}") from None
  got = 1 if pixels.ndim == 2 else pixels.shape[2]
  if got != channels or mode not in ("RGB", "L"):
    raise ConfigError(
        f"{path} has {got} channel(s) (mode {mode}); the SPAE model reads {channels} (RGB). "
        "Convert it first, e.g. PIL.Image.open(path).convert('RGB').save(...)."
    )
  if size != (side, side):
    raise ConfigError(
        f"{path} is {size[0]}x{size[1]} pixels; the SPAE model reads {side}x{side} "
        "(TASK_FEATURE_LENGTHS['image']). Resize or crop it first."
    )
  if pixels.dtype != np.uint8:
    raise ConfigError(f"{path} has {pixels.dtype} pixels; expected 8 bits per channel.")
  return pixels.astype(np.float32) / 255.0


def write_grid(path: str, rows: Sequence[Sequence[np.ndarray]], scale: int = 4) -> None:
  """Images [side, side, channels] in [0, 1] as one PNG, row by row (each enlarged `scale`
  times, 2-pixel white gaps), written under a temporary name and renamed: all or nothing."""
  image_lib = _pillow()
  side = rows[0][0].shape[0] * scale
  gap = 2
  width = max(len(r) for r in rows) * (side + gap) + gap
  canvas = np.full((len(rows) * (side + gap) + gap, width, 3), 255, np.uint8)
  for i, row in enumerate(rows):
    for j, image in enumerate(row):
      pixels = np.clip(np.asarray(image, np.float32), 0, 1)
      pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
      top, left = gap + i * (side + gap), gap + j * (side + gap)
      canvas[top : top + side, left : left + side] = np.round(pixels * 255).astype(np.uint8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  image_lib.fromarray(canvas).save(tmp, format="PNG")
  os.replace(tmp, path)
