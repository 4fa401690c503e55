"""The parallel corpus as a TFDS dataset, so tasks read it the way SeqIO reads real data.

`PodzooCatalogParallel` is a `tfds.core.GeneratorBasedBuilder`: one example per message, with a
text field per language ("" where that language has no translation). Its config is
named after the catalogs' fingerprint, so a package update builds a new dataset instead
of reusing a stale one. `prepare()` builds it once into `$PODZOO_CACHE/tfds` (under a
file lock, so hosts or test processes building at once do not collide) and returns the
`seqio.TfdsDataSource` that tasks use.
"""

import functools

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow_datasets as tfds

from tasks import cache, tfds_build
from tasks.parallel import corpus

NAME = "podzoo_catalog_parallel"  # TFDS names builders after their class, snake_cased
VERSION = "1.0.0"


class PodzooCatalogParallel(tfds.core.GeneratorBasedBuilder):
  """GLib/GTK/xkb UI strings and ISO names, translated by hand into every corpus language."""

  VERSION = tfds.core.Version(VERSION)
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=f"catalogs_{corpus.fingerprint()}")]

  def _info(self) -> tfds.core.DatasetInfo:
    languages = {lang: tfds.features.Text() for lang in corpus.LANGUAGES}
    return self.dataset_info_from_configs(
        description=corpus.__doc__,
        features=tfds.features.FeaturesDict(
            {"key": tfds.features.Text(), "domain": tfds.features.Text(), **languages}
        ),
        homepage="https://salsa.debian.org/iso-codes-team/iso-codes",
        license="LGPL-2.1+ (GLib, iso-codes), LGPL-2+ (GTK 2), MIT/X11 (xkeyboard-config)",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is on the machine already
    return {split: self._generate_examples(split) for split in corpus.SPLITS}

  def _generate_examples(self, split: str):
    for record in corpus.split_records(split):
      texts = {lang: record.texts.get(lang, "") for lang in corpus.LANGUAGES}
      yield record.key, {"key": record.key, "domain": record.domain, **texts}


def tfds_name() -> str:
  """The versioned TFDS name of this machine's corpus, e.g. `podzoo_catalog_parallel/catalogs_…:1.0.0`."""
  return f"{NAME}/{PodzooCatalogParallel.BUILDER_CONFIGS[0].name}:{VERSION}"


def prepare() -> seqio.TfdsDataSource:
  """Builds the dataset if this cache lacks it; returns a SeqIO source over it."""
  return _prepare(str(cache.cache_dir("tfds")))


@functools.cache
def _prepare(data_dir: str) -> seqio.TfdsDataSource:
  """`prepare` for one cache directory (PODZOO_CACHE may change within a process)."""
  tfds_build.build_once(lambda: PodzooCatalogParallel(data_dir=data_dir), data_dir, NAME)
  return seqio.TfdsDataSource(tfds_name=tfds_name(), tfds_data_dir=data_dir)
