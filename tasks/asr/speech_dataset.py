"""The synthesised speech data as a TFDS dataset, built offline, read by SeqIO tasks.

`PodzooAsrSpeech` is a `tfds.core.GeneratorBasedBuilder` with one config per
`speech_corpus.CONFIGS` entry, named `<config>_<fingerprint>` (`speech_corpus.fingerprint`:
a change of the config or of the ASR LM text builds a new dataset instead of reusing a stale
one). An example is one utterance: int16 16 kHz audio, its transcript, language, voice
(e.g. "de+f2 s=160 p=40 pink snr=20.3"), id ("de-test-00003") and length in samples.
Examples are stored unshuffled, language after language in the config's order, so one
language's utterances are a slice of each split (`source(config, lang)`) that a
per-language task reads without scanning the others; tasks shuffle as they read.

`prepare()` builds a config once into `$PODZOO_CACHE/tfds` (under a file lock, so hosts or
test processes building at once do not collide); `source()` only reads, and tells the user
the command that builds a missing config: tasks never start a build of minutes implicitly.
"""

import dataclasses
import os
from typing import Iterable

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import numpy as np
import seqio
import tensorflow_datasets as tfds

from model_zoo.errors import ConfigError
from tasks import cache, tfds_build
from tasks.asr import audio, speech_corpus, synthesis
from tasks.asr_lm import tasks as asr_lm_tasks
from tasks.pipeline import DataError

NAME = "podzoo_asr_speech"  # TFDS names builders after their class, snake_cased
VERSION = "1.0.0"
BUILD_COMMAND = "python -m tools.build_asr_speech --config {}"


@dataclasses.dataclass(eq=False)
class SpeechBuilderConfig(tfds.core.BuilderConfig):
  """A TFDS config that carries its `speech_corpus.SpeechConfig`."""

  speech: speech_corpus.SpeechConfig | None = None


class RawAudio(tfds.features.Audio):
  """`tfds.features.Audio` that honours `encoding` for arrays: 2 bytes a sample, not 5.4.

  TFDS 4.9's Audio returns an array unencoded, so it is stored as int64 varints (10 bytes
  for each negative sample: 2.6x the raw size of espeak-ng speech, measured).
  """

  def encode_example(self, audio_or_path_or_fobj):
    if isinstance(audio_or_path_or_fobj, np.ndarray):
      return tfds.features.Tensor.encode_example(self, audio_or_path_or_fobj)
    return super().encode_example(audio_or_path_or_fobj)


class PodzooAsrSpeech(tfds.core.GeneratorBasedBuilder):
  """espeak-ng speech of spoken-form GLib/GTK/ISO text in up to 8 languages."""

  VERSION = tfds.core.Version(VERSION)
  BUILDER_CONFIGS = [
      SpeechBuilderConfig(
          name=f"{config.name}_{speech_corpus.fingerprint(config)}",
          description=config.description,
          speech=config,
      )
      for config in speech_corpus.CONFIGS.values()
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict(
            {
                "audio": RawAudio(
                    shape=(None,),
                    dtype=np.int16,
                    sample_rate=audio.SAMPLE_RATE,
                    encoding=tfds.features.Encoding.BYTES,
                ),
                "text": tfds.features.Text(),
                "lang": tfds.features.Text(),
                "voice": tfds.features.Text(),
                "id": tfds.features.Text(),
                "num_samples": tfds.features.Scalar(np.int32),
            }
        ),
        disable_shuffling=True,  # languages stay contiguous: see the module docstring
        homepage="https://github.com/espeak-ng/espeak-ng",
        license="speech by espeak-ng (GPL-3.0+); text from GLib, GTK 2, iso-codes (LGPL)",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is on the machine already
    config = self.builder_config.speech
    synthesis.espeak_binary()  # a missing espeak-ng fails before anything is written
    check_transcripts(
        (utterance_id(lang, split, index), text)
        for split in speech_corpus.SPLITS
        for lang in config.languages
        for index, text in enumerate(speech_corpus.split_texts(config, lang, split))
    )
    return {split: self._generate_examples(config, split) for split in speech_corpus.SPLITS}

  def _generate_examples(self, config: speech_corpus.SpeechConfig, split: str):
    """Keyed by position: TFDS writes unshuffled examples in the order of their keys."""
    utterances = (
        (lang, index, text)
        for lang in config.languages
        for index, text in enumerate(speech_corpus.split_texts(config, lang, split))
    )
    for position, (lang, index, text) in enumerate(utterances):
      yield position, make_example(config, lang, split, index, text)


def utterance_id(lang: str, split: str, index: int) -> str:
  return f"{lang}-{split}-{index:05d}"


def make_example(
    config: speech_corpus.SpeechConfig, lang: str, split: str, index: int, text: str
) -> dict:
  """Utterance `index` of `lang` in `split`: `text` said by a voice drawn from its own seed."""
  rng = synthesis.utterance_rng(config.seed, lang, split, index)
  voice = synthesis.draw_voice(rng, lang)
  samples = synthesis.synthesize(text, voice)
  description = str(voice)
  if rng.random() < config.noise_probability:
    color = synthesis.NOISE_COLORS[rng.integers(len(synthesis.NOISE_COLORS))]
    snr_db = rng.uniform(*config.snr_db)
    samples = synthesis.add_noise(samples, snr_db, rng, color)
    description += f" {color} snr={snr_db:.1f}"
  return {
      "audio": samples,
      "text": text,
      "lang": lang,
      "voice": description,
      "id": utterance_id(lang, split, index),
      "num_samples": len(samples),
  }


def check_transcripts(utterances: Iterable[tuple[str, str]]) -> None:
  """Fails on a transcript the shared vocabulary cannot encode (unknown pieces) and decode back.

  The ASR model writes only what the vocabulary of its LM can: a transcript that does not
  survive a round trip is a target the model can never produce.
  """
  vocabulary = asr_lm_tasks.vocabulary()
  for uid, text in utterances:
    ids = vocabulary.encode(text)
    if vocabulary.unk_id in ids or vocabulary.decode(ids) != text:
      raise DataError(
          f"utterance {uid}: {text!r} is a transcript that the vocabulary cannot encode (it "
          f"decodes to {vocabulary.decode(ids)!r}). Transcripts must be lines of the ASR LM "
          "text the vocabulary was trained on (tasks.asr_lm.tasks.vocabulary)."
      )


def builder_config_name(config_name: str) -> str:
  """The TFDS config of `config_name` ("tiny", "default", "full"): name and fingerprint."""
  speech_corpus.get_config(config_name)  # names the configs if there is no such one
  return next(c.name for c in PodzooAsrSpeech.BUILDER_CONFIGS if c.speech.name == config_name)


def tfds_name(config_name: str) -> str:
  """The versioned TFDS name, e.g. `podzoo_asr_speech/tiny_0123456789:1.0.0`."""
  return f"{NAME}/{builder_config_name(config_name)}:{VERSION}"


def prepare(
    config_name: str, data_dir: str | os.PathLike | None = None, *, progress: bool = False
) -> seqio.TfdsDataSource:
  """Builds `config_name` into `data_dir` (default `$PODZOO_CACHE/tfds`) unless it is there;
  returns a SeqIO source over it. `progress` shows TFDS's progress bars."""
  data_dir = os.fspath(data_dir or cache.cache_dir("tfds"))
  tfds_build.build_once(lambda: _builder(config_name, data_dir), data_dir, NAME, progress=progress)
  return seqio.TfdsDataSource(tfds_name=tfds_name(config_name), tfds_data_dir=data_dir)


def source(config_name: str, lang: str | None = None) -> seqio.TfdsDataSource:
  """A SeqIO source over `config_name` in `$PODZOO_CACHE/tfds` (only `lang`'s utterances
  if given); never builds it."""
  data_dir = str(cache.cache_dir("tfds"))
  if not _builder(config_name, data_dir).is_prepared():
    raise DataError(
        f"the ASR speech data {config_name!r} ({tfds_name(config_name)}) is not built in "
        f"{data_dir}. Build it first (it needs espeak-ng: apt-get install espeak-ng): "
        f"{BUILD_COMMAND.format(config_name)}"
    )
  splits = None if lang is None else language_slices(speech_corpus.get_config(config_name), lang)
  return seqio.TfdsDataSource(
      tfds_name=tfds_name(config_name), tfds_data_dir=data_dir, splits=splits
  )


def language_slices(config: speech_corpus.SpeechConfig, lang: str) -> dict[str, str]:
  """Split name -> the TFDS slice of `lang`'s utterances in it, e.g. "train[12:24]"."""
  if lang not in config.languages:
    raise ConfigError(
        f"the speech data {config.name!r} has languages {config.languages}; got {lang!r}"
    )
  slices = {}
  for split in speech_corpus.SPLITS:
    sizes = [len(speech_corpus.split_texts(config, other, split)) for other in config.languages]
    start = sum(sizes[: config.languages.index(lang)])
    slices[split] = f"{split}[{start}:{start + sizes[config.languages.index(lang)]}]"
  return slices


def dataset_dir(config_name: str, data_dir: str | os.PathLike) -> str:
  """Where `config_name`'s files are under `data_dir` (every version of it)."""
  return os.path.join(os.fspath(data_dir), NAME, builder_config_name(config_name))


def _builder(config_name: str, data_dir: str) -> PodzooAsrSpeech:
  return PodzooAsrSpeech(config=builder_config_name(config_name), data_dir=data_dir)
