"""SeqIO ASR tasks over the synthesised speech data: per language, multilingual, SpecAugment.

For each config of `speech_corpus.CONFIGS` (the "default" one has no infix, the others put
their name after "asr_"):

- `asr_<lang>` / `asr_<config>_<lang>`: one language's utterances, e.g. `asr_de`,
  `asr_tiny_en`. Splits train, validation, test, test_rare (see `speech_corpus`).
- `asr_multilingual` / `asr_<config>_multilingual`: the config's languages at equal rates
  (each has as many train utterances, so equal rates are proportional to data too).
- the same names + `_specaugment` (`asr_de_specaugment`, `asr_multilingual_specaugment`):
  SpecAugment on the train split; their other splits equal the plain tasks', so a run that
  trains on one and evaluates on its validation split scores unmasked audio.

"inputs" are per-utterance normalised log-mels (float32 [frames, 80], computed as the data
is read), "targets" the transcript's ids in the ASR LM vocabulary (`tasks.asr_lm.tasks`) +
EOS, so an LM trained there fuses with the ASR model. An utterance longer than the
sequence lengths is dropped, never cut: cut audio would not say its transcript. The metric
is WER. Tasks read the built dataset only when asked for data (build it with
`python -m tools.build_asr_speech --config <name>`), so importing this module needs no data;
it registers every task and mixture, and importing it again is harmless.
"""

import functools

from tasks import tfenv  # noqa: F401  (configures TensorFlow before seqio imports it)

import seqio
import tensorflow as tf

from tasks import metrics
from tasks.asr import features, speech_corpus, speech_dataset
from tasks.asr_lm import tasks as asr_lm_tasks

DEFAULT_CONFIG = "default"
SPECAUGMENT_SUFFIX = "_specaugment"
# A row holds up to ~100 KB of log-mels; 256 keep the buffer of each task near 25 MB. The
# dataset is stored in sha256 order of the transcripts, unrelated to their content.
SHUFFLE_BUFFER_SIZE = 256


def _prefix(config: str) -> str:
  return "asr" if config == DEFAULT_CONFIG else f"asr_{config}"


def task_name(lang: str, config: str = DEFAULT_CONFIG, specaugment: bool = False) -> str:
  """The task of `lang` in speech config `config`, e.g. "asr_de", "asr_tiny_en_specaugment"."""
  return f"{_prefix(config)}_{lang}{SPECAUGMENT_SUFFIX if specaugment else ''}"


def mixture_name(config: str = DEFAULT_CONFIG, specaugment: bool = False) -> str:
  """The multilingual mixture of `config`, e.g. "asr_multilingual", "asr_tiny_multilingual"."""
  return f"{_prefix(config)}_multilingual{SPECAUGMENT_SUFFIX if specaugment else ''}"


def _dataset_fn(
    split: str,
    shuffle_files: bool,
    seed: int | None = None,
    *,
    config: str,
    lang: str,
    augment: bool,
) -> tf.data.Dataset:
  """`lang`'s utterances, looked up at read time: the cache may be built after import.

  Read in stored order (TFDS refuses to shuffle the files of an ordered dataset); the
  task's shuffle buffer shuffles.
  """
  del shuffle_files
  ds = speech_dataset.source(config, lang).get_dataset(split, shuffle=False, seed=seed)
  if augment:
    ds = ds.map(lambda ex: {**ex, "augment": tf.constant(split == "train")})
  return ds


@seqio.map_over_dataset
def _log_mel_and_text(ex: dict) -> dict:
  """Audio -> normalised log-mel "inputs", transcript -> "targets" (text until tokenized)."""
  out = {
      "inputs": features.log_mel(ex["audio"], normalize=True),
      "targets": ex["text"],
      "id": ex["id"],
      "lang": ex["lang"],
  }
  if "augment" in ex:
    out["augment"] = ex["augment"]
  return out


def drop_too_long(
    ds: tf.data.Dataset, sequence_length: dict | None, output_features: dict
) -> tf.data.Dataset:
  """Drops utterances with more frames than sequence_length["inputs"] or more tokens (EOS
  included) than sequence_length["targets"]; keeps everything when no lengths are given."""
  lengths = sequence_length or {}

  def fits(ex):
    ok = tf.constant(True)
    if lengths.get("inputs") is not None:
      ok &= tf.shape(ex["inputs"])[0] <= lengths["inputs"]
    if lengths.get("targets") is not None:
      eos = int(output_features["targets"].add_eos)
      ok &= tf.size(ex["targets"]) + eos <= lengths["targets"]
    return ok

  return ds.filter(fits)


@seqio.map_over_dataset(num_seeds=1)
def _spec_augment(ex: dict, seed: tf.Tensor) -> dict:
  """SpecAugment where the source marked the example for it (the train split)."""
  out = {k: v for k, v in ex.items() if k != "augment"}
  out["inputs"] = tf.cond(
      ex["augment"],
      lambda: features.spec_augment(ex["inputs"], seed),
      lambda: ex["inputs"],
  )
  return out


def _register() -> None:
  if mixture_name(DEFAULT_CONFIG) in seqio.MixtureRegistry.names():
    return
  output_features = {
      "inputs": seqio.ContinuousFeature(dtype=tf.float32, rank=2),
      "targets": seqio.Feature(asr_lm_tasks.vocabulary(), add_eos=True),
  }
  for config in speech_corpus.CONFIGS.values():
    for specaugment in (False, True):
      for lang in config.languages:
        seqio.TaskRegistry.add(
            task_name(lang, config.name, specaugment),
            source=seqio.FunctionDataSource(
                functools.partial(_dataset_fn, config=config.name, lang=lang, augment=specaugment),
                splits=speech_corpus.SPLITS,
            ),
            preprocessors=[
                _log_mel_and_text,
                seqio.preprocessors.tokenize,  # keeps "targets_pretokenized" for the metric
                seqio.CacheDatasetPlaceholder(),
                drop_too_long,
                seqio.preprocessors.append_eos_after_trim,
                *([_spec_augment] if specaugment else []),
            ],
            output_features=output_features,
            metric_fns=[metrics.wer],
            shuffle_buffer_size=SHUFFLE_BUFFER_SIZE,
        )
      seqio.MixtureRegistry.add(
          mixture_name(config.name, specaugment),
          [task_name(lang, config.name, specaugment) for lang in config.languages],
          default_rate=1.0,
      )


_register()
