"""Image files for the SPAE command line: what is refused and why, and whole PNG grids."""

import os

import numpy as np
import pytest
from PIL import Image

from model_zoo.errors import ConfigError, MissingFileError
from trainers import image_files


def save(path, array, mode=None):
  Image.fromarray(array, mode).save(path)
  return str(path)


def test_an_rgb_image_is_read_as_floats_in_0_1(tmp_path):
  pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
  got = image_files.read_image(save(tmp_path / "a.png", pixels), side=8)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, pixels / np.float32(255))


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((8, 8), np.uint8), r"1 channel\(s\) \(mode L\).*convert\('RGB'\)"),
        (np.zeros((8, 8, 4), np.uint8), r"4 channel\(s\) \(mode RGBA\)"),
        (np.zeros((8, 6, 3), np.uint8), r"is 6x8 pixels; the SPAE model reads 8x8"),
    ],
)
def test_other_channels_or_sizes_are_refused(tmp_path, array, match):
  with pytest.raises(ConfigError, match=match):
    image_files.read_image(save(tmp_path / "a.png", array), side=8)


def test_a_file_that_is_no_image_or_missing_is_refused(tmp_path):
  text = tmp_path / "a.png"
  text.write_text("not an image")
  with pytest.raises(ConfigError, match="is not an image Pillow can read"):
    image_files.read_image(str(text), side=8)
  with pytest.raises(MissingFileError, match="no image file"):
    image_files.read_image(str(tmp_path / "missing.png"), side=8)


def test_grid_places_each_image_enlarged_with_gaps(tmp_path):
  red = np.zeros((2, 2, 3), np.float32)
  red[..., 0] = 1
  blue = np.zeros((2, 2, 3), np.float32)
  blue[..., 2] = 1
  path = str(tmp_path / "out" / "grid.png")
  image_files.write_grid(path, [[red, blue], [blue]], scale=3)
  grid = np.asarray(Image.open(path))
  assert grid.shape == (2 + 2 * (6 + 2), 2 + 2 * (6 + 2), 3)
  assert (grid[2:8, 2:8] == [255, 0, 0]).all() and (grid[2:8, 10:16] == [0, 0, 255]).all()
  assert (grid[10:16, 2:8] == [0, 0, 255]).all() and (grid[10:16, 10:16] == 255).all()
  assert os.listdir(tmp_path / "out") == ["grid.png"]  # no temporary file left
