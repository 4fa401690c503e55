"""Builds podzoo's own TFDS datasets (made on the machine, never downloaded) into a cache."""

import os
from typing import Callable

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import tensorflow_datasets as tfds

from tasks import cache


def build_once(
    make_builder: Callable[[], tfds.core.DatasetBuilder],
    data_dir: str,
    name: str,
    *,
    progress: bool = False,
) -> None:
  """Builds `make_builder()`'s dataset into `data_dir` unless it is there already.

  Under a file lock named after `name`, so that hosts or test processes building at once do
  not collide: one builds while the others wait, then find it built. The builder is made
  inside the lock, so it sees what the winner wrote. `progress` shows TFDS's progress bars.
  """
  os.makedirs(data_dir, exist_ok=True)
  (tfds.enable_progress_bar if progress else tfds.disable_progress_bar)()
  with cache.file_lock(os.path.join(data_dir, f".{name}.lock")):
    builder = make_builder()
    if not builder.is_prepared():
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False)
      )
