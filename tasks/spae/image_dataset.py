"""The SPAE image data (images whose content is a word) as a TFDS dataset, built offline.

`PodzooSpaeImages` is a `tfds.core.GeneratorBasedBuilder` with one config per
`image_corpus.CONFIGS` entry, named `<config>_<fingerprint>` (`image_corpus.fingerprint`: a
change of the config, the drawing rules, the fonts or scikit-learn builds a new dataset
instead of reusing a stale one). An example is one image: uint8 [side, side, 3] (stored as
PNG), its word, class label, the word's language, id ("de-test-digit0042") and source
("digits[42]", "DejaVuSerif-Bold.ttf 12 px").

`prepare()` builds a config once into `$PODZOO_CACHE/tfds` (`tfds_build.build_once`: under a
file lock); `source()` only reads, and tells the user
the command that builds a missing config: tasks never start a build implicitly.
"""

import dataclasses
import os

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow_datasets as tfds

from tasks import cache, tfds_build
from tasks.pipeline import DataError
from tasks.spae import image_corpus, images

NAME = "podzoo_spae_images"  # TFDS names builders after their class, snake_cased
VERSION = "1.0.0"
BUILD_COMMAND = "python -m tools.build_spae_images --config {}"
DIGITS_CITATION = """@misc{optical_recognition_of_handwritten_digits_80,
  author = {Alpaydin, E. and Kaynak, C.},
  title = {{Optical Recognition of Handwritten Digits}},
  year = {1998},
  howpublished = {UCI Machine Learning Repository},
  note = {{DOI}: https://doi.org/10.24432/C50P49}
}"""


@dataclasses.dataclass(eq=False)
class ImageBuilderConfig(tfds.core.BuilderConfig):
  """A TFDS config that carries its `image_corpus.ImageConfig`."""

  images: image_corpus.ImageConfig | None = None


class PodzooSpaeImages(tfds.core.GeneratorBasedBuilder):
  """Handwritten digits named in several languages and rendered words, for SPAE."""

  VERSION = tfds.core.Version(VERSION)
  BUILDER_CONFIGS = [
      ImageBuilderConfig(
          name=f"{config.name}_{image_corpus.fingerprint(config)}",
          description=config.description,
          images=config,
      )
      for config in image_corpus.CONFIGS.values()
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config.images
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(config.side, config.side, 3)),
                "word": tfds.features.Text(),
                "label": tfds.features.ClassLabel(num_classes=image_corpus.num_classes(config)),
                "lang": tfds.features.Text(),
                "id": tfds.features.Text(),
                "source": tfds.features.Text(),
            }
        ),
        supervised_keys=("image", "label"),
        homepage="https://archive.ics.uci.edu/dataset/80",
        citation=DIGITS_CITATION if config.digits else None,
        license=(
            "digits: UCI Optical Recognition of Handwritten Digits (CC BY 4.0), as shipped "
            "with scikit-learn (BSD-3-Clause); words drawn in the DejaVu fonts (Bitstream "
            "Vera license, DejaVu changes public domain: free to use and redistribute); "
            "words from GLib/GTK 2/iso-codes/xkeyboard-config catalogs (LGPL/MIT)"
        ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is on the machine already
    config = self.builder_config.images
    # A missing scikit-learn or font fails before anything is written.
    if config.digits:
      images.load_digits()
    if config.words:
      image_corpus.split_fonts(config.words, "train")
    return {split: self._generate_examples(config, split) for split in image_corpus.SPLITS}

  def _generate_examples(self, config: image_corpus.ImageConfig, split: str):
    for entry in image_corpus.entries(config, split):
      yield entry.id, image_corpus.make_example(config, entry)


def builder_config_name(config_name: str) -> str:
  """The TFDS config of `config_name` ("tiny", "digits", "words"): name and fingerprint."""
  image_corpus.get_config(config_name)  # names the configs if there is no such one
  return next(c.name for c in PodzooSpaeImages.BUILDER_CONFIGS if c.images.name == config_name)


def tfds_name(config_name: str) -> str:
  """The versioned TFDS name, e.g. `podzoo_spae_images/tiny_0123456789:1.0.0`."""
  return f"{NAME}/{builder_config_name(config_name)}:{VERSION}"


def prepare(
    config_name: str, data_dir: str | os.PathLike | None = None, *, progress: bool = False
) -> seqio.TfdsDataSource:
  """Builds `config_name` into `data_dir` (default `$PODZOO_CACHE/tfds`) unless it is there;
  returns a SeqIO source over it. `progress` shows TFDS's progress bars."""
  data_dir = os.fspath(data_dir or cache.cache_dir("tfds"))
  tfds_build.build_once(lambda: _builder(config_name, data_dir), data_dir, NAME, progress=progress)
  return seqio.TfdsDataSource(tfds_name=tfds_name(config_name), tfds_data_dir=data_dir)


def source(config_name: str) -> seqio.TfdsDataSource:
  """A SeqIO source over `config_name` in `$PODZOO_CACHE/tfds`; never builds it."""
  data_dir = str(cache.cache_dir("tfds"))
  if not _builder(config_name, data_dir).is_prepared():
    raise DataError(
        f"the SPAE image data {config_name!r} ({tfds_name(config_name)}) is not built in "
        f"{data_dir}. Build it first (seconds to a minute): {BUILD_COMMAND.format(config_name)}"
    )
  return seqio.TfdsDataSource(tfds_name=tfds_name(config_name), tfds_data_dir=data_dir)


def dataset_dir(config_name: str, data_dir: str | os.PathLike) -> str:
  """Where `config_name`'s files are under `data_dir` (every version of it)."""
  return os.path.join(os.fspath(data_dir), NAME, builder_config_name(config_name))


def _builder(config_name: str, data_dir: str) -> PodzooSpaeImages:
  return PodzooSpaeImages(config=builder_config_name(config_name), data_dir=data_dir)
