"""The speech data: espeak-ng synthesis, the splits' sentences, the TFDS build, the SeqIO
tasks and the asr feature converter.

The "tiny" config is built once for the module into a temporary PODZOO_CACHE.
"""

import dataclasses
import io
import pathlib
import re
import shutil
import wave

import gin
import numpy as np
import pytest
import seqio

from tasks import cache, metrics, pipeline
from tasks.asr import audio, feature_converter, features, speech_corpus, speech_dataset, synthesis
from tasks.asr import tasks as asr_tasks
from tasks.asr_lm import corpus, normalize
from tests.tasks import gin_fragments

TINY = speech_corpus.get_config("tiny")
LENGTHS = {"inputs": 1024, "targets": 64}
VOICE = re.compile(r"(en|de)\+[mf]\d s=\d+ p=\d+( (white|pink) snr=\d+\.\d)?")
NEEDS_ESPEAK = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng); it synthesises the speech",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A temporary PODZOO_CACHE holding the built "tiny" config; its TFDS data dir."""
  if shutil.which("espeak-ng") is None:
    pytest.skip("espeak-ng is not installed (apt-get install espeak-ng); it synthesises the speech")
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv(cache.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
    speech_dataset.prepare("tiny")
    yield cache.cache_dir("tfds")


def read_split(split: str) -> list[dict]:
  ds = speech_dataset.source("tiny").get_dataset(split, shuffle=False)
  return list(ds.as_numpy_iterator())


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
  out = io.BytesIO()
  with wave.open(out, "wb") as f:
    f.setnchannels(channels)
    f.setsampwidth(2)
    f.setframerate(rate)
    f.writeframes(samples.astype("<i2").tobytes())
  return out.getvalue()


# --- audio checks --------------------------------------------------------------------------
def speech_like(seconds: float = 0.5) -> np.ndarray:
  t = np.arange(int(seconds * audio.SAMPLE_RATE)) / audio.SAMPLE_RATE
  return (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


def test_load_wav_reads_16khz_mono():
  samples = speech_like()
  np.testing.assert_array_equal(audio.load_wav(wav_bytes(samples, 16000)), samples)


@pytest.mark.parametrize(
    "samples,rate,channels,expected",
    [
        (speech_like(), 44100, 1, r"sample rate 44100 Hz; expected 16000 Hz.*sox in\.wav -r 16000"),
        (np.repeat(speech_like(), 2), 16000, 2, r"2 channels; expected mono.*sox .* -c 1"),
        (np.zeros(0, np.int16), 16000, 1, r"no samples"),
        (np.full(8000, 20, np.int16), 16000, 1, r"silent \(peak 20 of 32767"),
    ],
    ids=["rate", "stereo", "empty", "silence"],
)
def test_audio_that_is_not_16khz_mono_speech_is_refused(
    tmp_path, samples, rate, channels, expected
):
  path = tmp_path / "user.wav"
  path.write_bytes(wav_bytes(samples, rate, channels))
  with pytest.raises(audio.AudioError, match=expected) as error:
    audio.load_wav(path)
  assert str(path) in str(error.value)
  assert isinstance(error.value, ValueError)


def test_a_file_that_is_not_a_wav_is_refused(tmp_path):
  path = tmp_path / "notes.wav"
  path.write_text("not audio")
  with pytest.raises(audio.AudioError, match="not a readable PCM WAV file"):
    audio.read_wav(path)


# --- synthesis -------------------------------------------------------------------------------
@NEEDS_ESPEAK
@pytest.mark.parametrize("lang", corpus.LANGUAGES)
def test_espeak_says_every_language(lang):
  text = corpus.split_lines(lang, "validation")[0]
  samples = synthesis.synthesize(text, synthesis.Voice(lang, "f2", 160, 50))
  assert samples.dtype == np.int16 and len(samples) > 0.2 * audio.SAMPLE_RATE
  assert np.abs(samples.astype(np.int32)).max() > 1000


def test_missing_espeak_names_the_package(monkeypatch, tmp_path):
  monkeypatch.setenv("PATH", str(tmp_path))  # a directory without espeak-ng
  with pytest.raises(synthesis.EspeakMissingError, match="apt-get install espeak-ng"):
    synthesis.synthesize("hello", synthesis.Voice("en", "m1", 160, 50))
  with pytest.raises(synthesis.EspeakMissingError, match="apt-get install espeak-ng"):
    speech_dataset.prepare("tiny", tmp_path / "tfds")
  assert not list((tmp_path / "tfds").rglob("*.tfrecord*"))


@pytest.mark.parametrize("color", synthesis.NOISE_COLORS)
def test_noise_has_the_requested_snr(color):
  clean = speech_like(2.0)
  noisy = synthesis.add_noise(clean, 15.0, np.random.default_rng(0), color)
  noise = noisy.astype(np.float64) - clean
  snr = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise**2))
  assert snr == pytest.approx(15.0, abs=0.1)
  power = np.abs(np.fft.rfft(noise)) ** 2
  low, high = power[1 : len(power) // 8].mean(), power[len(power) // 2 :].mean()
  assert (low / high > 10) == (color == "pink")  # pink: 1/f power; white: flat


@NEEDS_ESPEAK
def test_an_utterance_depends_on_the_seed_not_on_build_order():
  text = speech_corpus.split_texts(TINY, "de", "train")[3]
  first = speech_dataset.make_example(TINY, "de", "train", 3, text)
  speech_dataset.make_example(TINY, "de", "train", 0, text)
  again = speech_dataset.make_example(TINY, "de", "train", 3, text)
  assert first["voice"] == again["voice"] and first["audio"].tobytes() == again["audio"].tobytes()
  other = speech_dataset.make_example(dataclasses.replace(TINY, seed=1), "de", "train", 3, text)
  assert other["audio"].tobytes() != first["audio"].tobytes()
  assert VOICE.fullmatch(first["voice"]) and VOICE.fullmatch(other["voice"])


# --- which sentences each split says ---------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny", "default"])
def test_splits_take_the_right_asr_lm_lines(name):
  config = speech_corpus.get_config(name)
  for lang in config.languages:
    texts = {s: speech_corpus.split_texts(config, lang, s) for s in speech_corpus.SPLITS}
    for split, lines in texts.items():
      cap = config.utterances[split]
      assert lines and (cap is None or len(lines) <= cap) and len(set(lines)) == len(lines)
      assert all(normalize.spoken_form(line, lang) == line for line in lines)
      assert all(len(line.split()) <= config.max_words for line in lines)
    assert len(texts["train"]) == config.utterances["train"]
    assert set(texts["train"]) <= set(corpus.split_lines(lang, "train"))
    held_out = set(corpus.split_lines(lang, "validation"))
    assert not set(texts["train"]) & held_out
    assert set(texts["validation"]) <= held_out and set(texts["test"]) <= held_out
    assert not set(texts["validation"]) & set(texts["test"])
    assert not set(texts["validation"]) & set(texts["test_rare"])
    heard = {w for line in texts["train"] for w in line.split()}
    lm_words = {w for line in corpus.split_lines(lang, "train") for w in line.split()}
    for line in texts["test_rare"]:
      assert (set(line.split()) - heard) & lm_words, line


def test_an_unencodable_transcript_is_refused():
  with pytest.raises(pipeline.DataError, match=r"utterance de-train-00007: 'zwei  leerzeichen'"):
    speech_dataset.check_transcripts(
        [("de-train-00006", "gut"), ("de-train-00007", "zwei  leerzeichen")]
    )


def test_unknown_config_names_the_configs():
  with pytest.raises(
      speech_corpus.ConfigError, match=r"choose one of \['default', 'full', 'tiny'\]"
  ):
    speech_dataset.prepare("huge")


# --- the built dataset ---------------------------------------------------------------------
def test_a_missing_dataset_names_the_build_command(tmp_cache):
  command = "python -m tools.build_asr_speech --config tiny"
  with pytest.raises(pipeline.DataError, match=re.escape(command)):
    speech_dataset.source("tiny")
  with pytest.raises(pipeline.DataError, match=re.escape(command)):
    pipeline.get_batches(
        "asr_tiny_en", LENGTHS, "validation", 2, feature_converter="asr", pack=False
    )


def test_utterances_hold_their_transcripts_and_audio(tiny):
  for split in speech_corpus.SPLITS:
    examples = read_split(split)
    expected = [
        (lang, text)
        for lang in TINY.languages
        for text in speech_corpus.split_texts(TINY, lang, split)
    ]
    assert [(ex["lang"].decode(), ex["text"].decode()) for ex in examples] == expected
    for ex in examples:
      assert ex["audio"].dtype == np.int16 and len(ex["audio"]) == ex["num_samples"]
      assert ex["num_samples"] > 0.2 * audio.SAMPLE_RATE and np.abs(ex["audio"]).max() > 1000
      assert VOICE.fullmatch(ex["voice"].decode()), ex["voice"]
      lang, split_of_id, index = ex["id"].decode().split("-")
      assert (lang, split_of_id) == (ex["lang"].decode(), split)
      assert speech_corpus.split_texts(TINY, lang, split)[int(index)] == ex["text"].decode()


def test_builds_are_byte_identical(tiny, tmp_path):
  speech_dataset.prepare("tiny", tmp_path)
  first = sorted(pathlib.Path(speech_dataset.dataset_dir("tiny", tiny)).rglob("*.tfrecord*"))
  second = sorted(pathlib.Path(speech_dataset.dataset_dir("tiny", tmp_path)).rglob("*.tfrecord*"))
  assert [f.name for f in first] == [f.name for f in second] and len(first) == 4
  assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second))


# --- SeqIO tasks and the feature converter ----------------------------------------------------
def test_task_names_and_features():
  for lang in TINY.languages:
    for specaugment in (False, True):
      task = seqio.get_mixture_or_task(asr_tasks.task_name(lang, "tiny", specaugment))
      assert task.metric_fns == [metrics.wer]
  assert asr_tasks.task_name("de") == "asr_de"
  assert asr_tasks.mixture_name("tiny", specaugment=True) == "asr_tiny_multilingual_specaugment"
  mixture = seqio.get_mixture_or_task("asr_multilingual")
  assert sorted(t.name for t in mixture.tasks) == ["asr_de", "asr_en", "asr_es", "asr_fr"]
  assert "asr_it" not in seqio.TaskRegistry.names() and "asr_full_it" in seqio.TaskRegistry.names()
  assert pipeline.vocab_size("asr_multilingual") == 2048
  with pytest.raises(pipeline.DataError, match="holds numbers"):
    pipeline.vocab_size("asr_tiny_en", "inputs")


def task_examples(name: str, split: str = "validation", lengths=None, seed: int = 0) -> list[dict]:
  task = seqio.get_mixture_or_task(name)
  ds = task.get_dataset(lengths or LENGTHS, split=split, shuffle=False, seed=seed)
  return list(ds.as_numpy_iterator())


def test_task_yields_log_mels_and_the_transcript_tokens(tiny):
  vocabulary = seqio.get_mixture_or_task("asr_tiny_de").output_features["targets"].vocabulary
  raw = {ex["id"]: ex for ex in read_split("validation")}
  examples = task_examples("asr_tiny_de")
  assert len(examples) == TINY.utterances["validation"]
  for ex in examples:
    source = raw[ex["id"]]
    assert ex["inputs"].dtype == np.float32
    assert ex["inputs"].shape == (-(-source["num_samples"] // features.FRAME_STEP), 80)
    expected = features.log_mel(source["audio"], normalize=True)
    np.testing.assert_allclose(ex["inputs"], expected, rtol=1e-5, atol=1e-4)
    assert ex["targets"][-1] == vocabulary.eos_id
    assert vocabulary.decode(ex["targets"][:-1].tolist()) == source["text"].decode()
    assert ex["targets_pretokenized"] == source["text"]


def test_too_long_utterances_are_dropped_not_cut(tiny):
  every = task_examples("asr_tiny_en", "train")
  frames = sorted(len(ex["inputs"]) for ex in every)
  limit = frames[len(frames) // 2]
  kept = task_examples("asr_tiny_en", "train", {"inputs": limit, "targets": 64})
  assert len(kept) == sum(f <= limit for f in frames) < len(every)
  tokens = sorted(len(ex["targets"]) for ex in every)
  short = task_examples("asr_tiny_en", "train", {"inputs": 1024, "targets": tokens[3]})
  assert sorted(len(ex["targets"]) for ex in short) == tokens[: len(short)]
  assert len(short) == sum(t <= tokens[3] for t in tokens)


def test_converter_batches_have_the_asr_layout(tiny):
  rows = task_examples("asr_tiny_en")
  batch = next(
      pipeline.get_batch_iterator(
          "asr_tiny_en", LENGTHS, "validation", 4, feature_converter="asr", pack=False,
          shuffle=False, num_epochs=1,
      )
  )  # fmt: skip
  shapes = pipeline.model_feature_shapes("asr", LENGTHS, 4, pack=False)
  assert {k: v.shape for k, v in batch.items()} == shapes
  assert shapes["encoder_input_features"] == (4, 1024, 80)
  assert batch["encoder_input_features"].dtype == np.float32
  assert all(v.dtype == np.int32 for k, v in batch.items() if k != "encoder_input_features")
  for i, row in enumerate(rows):
    frames, tokens = len(row["inputs"]), len(row["targets"])
    assert (
        batch["encoder_input_mask"][i].sum()
        == frames
        == batch["encoder_input_mask"][i, :frames].sum()
    )
    np.testing.assert_array_equal(batch["encoder_input_features"][i, :frames], row["inputs"])
    assert not batch["encoder_input_features"][i, frames:].any()
    np.testing.assert_array_equal(batch["decoder_target_tokens"][i, :tokens], row["targets"])
    np.testing.assert_array_equal(
        batch["decoder_input_tokens"][i],
        np.concatenate([[0], batch["decoder_target_tokens"][i, :-1]]),
    )
    np.testing.assert_array_equal(
        batch["decoder_loss_weights"][i], batch["decoder_target_tokens"][i] > 0
    )


def test_converter_refuses_packing_and_checks_features():
  with pytest.raises(pipeline.DataError, match="cannot pack"):
    feature_converter.AsrFeatureConverter(pack=True)
  pipeline.check_features("asr_tiny_multilingual", "asr")
  with pytest.raises(pipeline.DataError, match=r"lacks \['inputs'\]"):
    pipeline.check_features("asr_lm_en", "asr")


def test_specaugment_masks_train_only_and_follows_the_seed(tiny):
  plain, augmented = "asr_tiny_en", "asr_tiny_en_specaugment"
  for a, b in zip(task_examples(plain), task_examples(augmented)):
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
  train = {ex["id"]: ex["inputs"] for ex in task_examples(plain, "train")}
  masked = task_examples(augmented, "train")
  for ex in masked:
    zero = ex["inputs"] == 0
    assert zero.all(axis=0).any()  # a whole mel band is masked
    np.testing.assert_array_equal(ex["inputs"][~zero], train[ex["id"]][~zero])
  again, other = task_examples(augmented, "train"), task_examples(augmented, "train", seed=1)
  assert all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(masked, again))
  assert not all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(masked, other))


def test_gin_fragment_binds_the_mixture_unpacked():
  gin_fragments.parse_with_tiny_encoder_decoder("gin/mixtures/asr.gin")
  assert gin.query_parameter("%MIXTURE_OR_TASK_NAME") == asr_tasks.mixture_name()
  assert gin.query_parameter("%TASK_FEATURE_LENGTHS") == {"inputs": 1024, "targets": 64}
  assert gin.query_parameter("train/DatasetConfig.pack") is False
  assert gin.query_parameter("TransformerConfig.vocab_size") == pipeline.vocab_size(
      "asr_multilingual"
  )
