"""The SPAE image data: digits and rendered words, the splits, the TFDS build, the SeqIO tasks
and the spae feature converter.

The "tiny" config is built once for the module into a temporary PODZOO_CACHE.
"""

import collections
import dataclasses
import pathlib
import re

import gin
import numpy as np
import pytest
import seqio
from num2words import num2words

from model_zoo import feature_converters as fc
from model_zoo.errors import ConfigError
from tasks import cache, pipeline, quickstart
from tasks.spae import feature_converter, image_corpus, image_dataset, images
from tasks.spae import tasks as spae_tasks
from tests.tasks import gin_fragments
from trainers import data
from trainers.dataset_config import DatasetConfig

TINY = image_corpus.get_config("tiny")
LENGTHS = {"image": 32, "targets": 4}
SIZES = {"train": 2 * 10 * 2 + 4 * 3, "validation": 2 * 10 * 2 + 4 * 2, "test": 2 * 10 * 2 + 4 * 2}
DIGIT_SOURCE = re.compile(r"digits\[(\d+)\]")
FONT_SOURCE = re.compile(r"(\S+\.ttf) (\d+) px")
# Resolved at import, in the real cache (the tiny fixture's cache has no vocabulary).
VOCABULARY = seqio.get_mixture_or_task("spae_tiny").output_features["targets"].vocabulary


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A temporary PODZOO_CACHE holding the built "tiny" config; its TFDS data dir."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv(cache.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
    image_dataset.prepare("tiny")
    yield cache.cache_dir("tfds")


def read_split(split: str) -> list[dict]:
  ds = image_dataset.source("tiny").get_dataset(split, shuffle=False)
  return list(ds.as_numpy_iterator())


def border(image: np.ndarray) -> np.ndarray:
  return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


# --- drawing -------------------------------------------------------------------------------
def test_colours_differ_by_80_levels_in_every_channel_either_way_round():
  light_background = set()
  for seed in range(200):
    ink, background = images.draw_colors(images.example_rng(seed, "colours"))
    assert (np.abs(ink - background) >= 80).all()
    light_background.add(bool(background.sum() > ink.sum()))
  assert light_background == {True, False}


def test_digit_images_are_the_digits_upscaled():
  grey, labels = images.load_digits()
  assert grey.shape == (1797, 8, 8) and grey.dtype == np.uint8 and grey.max() == 16
  assert sorted(set(labels.tolist())) == list(range(10))
  for index in (0, 7, 1000):
    image = images.digit_image(grey[index], 32, images.example_rng(0, "a"))
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    # How far each pixel is from the background (digits leave the corners blank) follows
    # the 8x8 grey levels: its 4x4 block means are the digit's.
    coverage = np.abs(image.astype(float) - image[0, 0]).max(-1)
    blocks = coverage.reshape(8, 4, 8, 4).mean((1, 3))
    assert np.corrcoef(blocks.ravel(), grey[index].ravel())[0, 1] > 0.95


def test_rendered_words_keep_every_glyph_inside_the_image():
  fonts = images.find_fonts("DejaVu*.ttf")
  assert len(fonts) >= 6  # fonts-dejavu-core
  longest = max((w for _, w in image_corpus.WORDS), key=len)
  for font in fonts:
    for word in (longest, "Menü", "botón", "fils"):
      rng = images.example_rng(0, f"{font.name}/{word}")
      image, size = images.word_image(word, font, 40, 32, rng)  # 40 px never fits: shrunk
      assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and size < 40
      assert (border(image) == image[0, 0]).all(), (font.name, word)
      assert (image != image[0, 0]).any(-1).sum() > 20  # the word is drawn


def test_a_word_too_long_for_the_image_is_refused():
  font = images.find_fonts("DejaVuSans.ttf")[0]
  with pytest.raises(ConfigError, match="does not fit a 16x16 image"):
    images.word_image("Fehlermeldung", font, 12, 16, images.example_rng(0, "x"))


def test_no_font_names_the_package_before_anything_is_written(tmp_path, monkeypatch):
  with pytest.raises(ConfigError, match=r"apt-get install fonts-dejavu-core"):
    images.require_fonts("*.ttf", tmp_path)
  monkeypatch.setattr(images, "FONT_DIR", tmp_path / "no_fonts")
  with pytest.raises(ConfigError, match=r"no TrueType font 'DejaVu\*.ttf' .* fonts-dejavu-core"):
    image_dataset.prepare("tiny", tmp_path / "tfds")
  assert not list((tmp_path / "tfds").rglob("*.tfrecord*"))


def test_an_example_depends_on_its_seed_not_on_build_order():
  entries = image_corpus.entries(TINY, "validation")
  digit, word = entries[3], entries[-1]
  first = [image_corpus.make_example(TINY, e)["image"] for e in (digit, word)]
  image_corpus.make_example(TINY, entries[0])
  again = [image_corpus.make_example(TINY, e)["image"] for e in (word, digit)][::-1]
  assert all(np.array_equal(a, b) for a, b in zip(first, again))
  other = dataclasses.replace(TINY, seed=1)
  assert not np.array_equal(image_corpus.make_example(other, digit)["image"], first[0])


# --- which images each split holds ---------------------------------------------------------
def test_digit_splits_are_stratified_and_disjoint():
  config = image_corpus.get_config("digits")
  _, labels = images.load_digits()
  splits = {s: image_corpus.digit_indices(config, s) for s in image_corpus.SPLITS}
  assert sorted(sum(splits.values(), ())) == list(range(len(labels)))  # each image once
  for digit in range(10):
    counts = {s: int((labels[list(idx)] == digit).sum()) for s, idx in splits.items()}
    total = int((labels == digit).sum())
    assert counts["validation"] == counts["test"] == round(0.15 * total)
    assert counts["train"] == total - 2 * round(0.15 * total)
  examples = image_corpus.entries(config, "test")
  assert len(examples) == 3 * len(splits["test"])
  assert {(e.lang, e.word) for e in examples if e.label == 7} == {
      ("en", "seven"),
      ("de", "sieben"),
      ("fr", "sept"),
  }


def test_held_out_words_are_drawn_in_held_out_fonts():
  words = image_corpus.get_config("words").words
  train = set(image_corpus.split_fonts(words, "train"))
  held_out = set(image_corpus.split_fonts(words, "validation"))
  assert held_out == set(image_corpus.split_fonts(words, "test"))
  assert train and held_out and not train & held_out
  assert train | held_out == set(images.find_fonts(words.fonts))
  assert len(held_out) == round(0.25 * (len(train) + len(held_out)))


def test_words_and_digit_names_are_a_few_tokens_of_the_pretraining_vocabulary():
  assert len(image_corpus.WORDS) == 32 and len({w.lower() for _, w in image_corpus.WORDS}) == 32
  for _, word in image_corpus.WORDS:
    ids = VOCABULARY.encode(word)
    assert 1 <= len(ids) <= 2 and VOCABULARY.decode(ids) == word, word
  for lang in image_corpus.get_config("digits").digits.languages:
    for digit in range(10):
      ids = VOCABULARY.encode(num2words(digit, lang=lang))
      assert len(ids) <= LENGTHS["targets"] and VOCABULARY.decode(ids) == num2words(
          digit, lang=lang
      )


@pytest.mark.slow
def test_words_are_frequent_in_their_languages_train_messages():
  from tasks.parallel import corpus  # pylint: disable=g-import-not-at-top  (reads catalogs)

  for lang in ("en", "de", "fr", "es"):
    counts = collections.Counter(
        w for line in corpus.monolingual(lang, "train") for w in re.findall(r"\w+", line)
    )
    frequent = [w for w, _ in counts.most_common(200)]
    assert {w for code, w in image_corpus.WORDS if code == lang} <= set(frequent), lang


# --- the built dataset ---------------------------------------------------------------------
def test_splits_hold_every_class_at_their_sizes(tiny):
  for split in image_corpus.SPLITS:
    examples = read_split(split)
    assert len(examples) == SIZES[split] == len(image_corpus.entries(TINY, split))
    per_class = collections.Counter(int(ex["label"]) for ex in examples)
    assert sorted(per_class) == list(range(image_corpus.num_classes(TINY))) == list(range(14))
    assert len({ex["id"] for ex in examples}) == len(examples)
    for ex in examples:
      assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8
      assert ex["image"].min() < images.DARK[1] and ex["image"].max() >= images.LIGHT[0]


def test_held_out_digits_share_no_source_image_with_train(tiny):
  _, labels = images.load_digits()
  sources = {}
  for split in image_corpus.SPLITS:
    sources[split] = set()
    for ex in read_split(split):
      match = DIGIT_SOURCE.fullmatch(ex["source"].decode())
      if match:
        index = int(match.group(1))
        sources[split].add(index)
        assert ex["label"] == labels[index] and ex["word"].decode() == num2words(
            int(labels[index]), lang=ex["lang"].decode()
        )
        entry = image_corpus.Entry(
            ex["id"].decode(), ex["word"].decode(), int(ex["label"]), ex["lang"].decode(),
            split, index,
        )  # fmt: skip
        expected = image_corpus.make_example(TINY, entry)["image"]  # the pixels of that source
        np.testing.assert_array_equal(ex["image"], expected)
    assert len(sources[split]) == 20  # 2 of each digit, drawn once per language
  assert not sources["train"] & sources["validation"]
  assert not sources["train"] & sources["test"]
  assert not sources["validation"] & sources["test"]


def test_built_words_are_whole_and_in_their_splits_fonts(tiny):
  for split in image_corpus.SPLITS:
    fonts = {font.name for font in image_corpus.split_fonts(TINY.words, split)}
    words = [ex for ex in read_split(split) if FONT_SOURCE.fullmatch(ex["source"].decode())]
    assert len(words) == 4 * TINY.words.renderings[split]
    for ex in words:
      font, size = FONT_SOURCE.fullmatch(ex["source"].decode()).groups()
      assert font in fonts and images.MIN_FONT_SIZE <= int(size) <= TINY.words.font_sizes[1]
      assert (border(ex["image"]) == ex["image"][0, 0]).all(), ex["id"]


def test_builds_are_byte_identical(tiny, tmp_path):
  image_dataset.prepare("tiny", tmp_path)
  first = sorted(pathlib.Path(image_dataset.dataset_dir("tiny", tiny)).rglob("*.tfrecord*"))
  second = sorted(pathlib.Path(image_dataset.dataset_dir("tiny", tmp_path)).rglob("*.tfrecord*"))
  assert [f.name for f in first] == [f.name for f in second] and len(first) == 3
  assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second))


def test_a_changed_config_is_a_new_dataset():
  names = {c.name for c in image_dataset.PodzooSpaeImages.BUILDER_CONFIGS}
  assert image_dataset.builder_config_name("tiny") in names and len(names) == 3
  fingerprint = image_corpus.fingerprint(TINY)
  assert re.fullmatch(r"[0-9a-f]{10}", fingerprint)
  assert image_corpus.fingerprint(dataclasses.replace(TINY, side=48)) != fingerprint
  assert image_dataset.tfds_name("tiny") == f"podzoo_spae_images/tiny_{fingerprint}:1.0.0"


def test_a_missing_dataset_names_the_build_command(tmp_cache):
  command = "python -m tools.build_spae_images --config digits"
  with pytest.raises(pipeline.DataError, match=re.escape(command)):
    image_dataset.source("digits")
  with pytest.raises(pipeline.DataError, match=re.escape(command)):
    pipeline.get_batches(
        "spae_digits_en", LENGTHS, "validation", 2, feature_converter="spae", pack=False
    )


def test_unknown_config_names_the_configs():
  with pytest.raises(ConfigError, match=r"choose one of \['digits', 'tiny', 'words'\]"):
    image_dataset.prepare("huge")


# --- SeqIO tasks and the feature converter ----------------------------------------------------
def test_task_names_and_features():
  assert spae_tasks.task_name("digits", "de") == "spae_digits_de"
  registered = set(seqio.TaskRegistry.names())
  assert {"spae_tiny", "spae_digits", "spae_words", "spae_words_es"} <= registered
  assert {f"spae_digits_{lang}" for lang in ("en", "de", "fr")} <= registered
  assert "spae_digits_es" not in registered
  task = seqio.get_mixture_or_task("spae_digits_en")
  assert task.output_features["targets"].add_eos is False and task.splits == image_corpus.SPLITS
  assert pipeline.vocab_size("spae_words") == 8295  # tasks.pretraining.vocabulary.VOCAB_SIZE
  with pytest.raises(pipeline.DataError, match="holds numbers"):
    pipeline.vocab_size("spae_tiny", "image")


def task_examples(name: str, split: str = "validation") -> list[dict]:
  ds = seqio.get_mixture_or_task(name).get_dataset(LENGTHS, split=split, shuffle=False)
  return list(ds.as_numpy_iterator())


@pytest.mark.slow
def test_task_filters_a_language_and_scales_the_images(tiny):
  raw = {ex["id"]: ex for ex in read_split("validation")}
  examples = task_examples("spae_tiny_de")
  assert len(examples) == 20 + 2  # the German digit names and the German word
  for ex in examples:
    source = raw[ex["id"]]
    assert ex["lang"] == b"de" and ex["word"] == source["word"] and ex["label"] == source["label"]
    assert ex["image"].dtype == np.float32
    np.testing.assert_array_equal(ex["image"], source["image"].astype(np.float32) / 255)
    assert VOCABULARY.decode(ex["targets"].tolist()) == source["word"].decode()


def test_batches_have_the_shapes_the_spec_promises(tiny):
  rows = task_examples("spae_tiny")
  cfg = DatasetConfig(
      "spae_tiny", LENGTHS, "validation", batch_size=8, shuffle=False, pack=False, num_epochs=1
  )
  shapes = data.global_batch_shapes(cfg, fc.SpaeFeatureConverter)
  assert shapes == {"image": (8, 32, 32, 3), "semantic_tokens": (8, 4)}
  batches = list(data.batches(cfg, fc.SpaeFeatureConverter))
  assert len(batches) == SIZES["validation"] // 8
  for b, batch in enumerate(batches):
    assert {k: v.shape for k, v in batch.items()} == shapes
    assert batch["image"].dtype == np.float32 and batch["semantic_tokens"].dtype == np.int32
    assert 0 <= batch["image"].min() and batch["image"].max() <= 1
    for i, tokens in enumerate(batch["semantic_tokens"]):
      row = rows[8 * b + i]
      np.testing.assert_array_equal(batch["image"][i], row["image"])
      length = len(row["targets"])
      assert VOCABULARY.decode(tokens[:length].tolist()) == row["word"].decode()
      assert (tokens[:length] > 0).all() and not tokens[length:].any()  # 0-padded


def test_long_words_are_cut_to_the_targets_length(tiny):
  batch = next(
      pipeline.get_batch_iterator(
          "spae_tiny", {"image": 32, "targets": 1}, "validation", 4, feature_converter="spae",
          pack=False, shuffle=False, num_epochs=1,
      )
  )  # fmt: skip
  rows = task_examples("spae_tiny")[:4]
  assert batch["semantic_tokens"].shape == (4, 1)
  assert batch["semantic_tokens"][:, 0].tolist() == [row["targets"][0] for row in rows]


def test_converter_refuses_packing_and_a_wrong_side(tiny):
  with pytest.raises(pipeline.DataError, match="spae feature converter cannot pack"):
    feature_converter.SpaeFeatureConverter(pack=True)
  with pytest.raises(pipeline.DataError, match="cannot pack"):
    pipeline.model_feature_shapes("spae", LENGTHS, 4, pack=True)
  with pytest.raises(pipeline.DataError, match=r"images are \(32, 32, 3\).*'image'\]=64"):
    pipeline.get_batches(
        "spae_tiny", {"image": 64, "targets": 4}, "validation", 4, feature_converter="spae",
        pack=False,
    )  # fmt: skip
  pipeline.check_features("spae_words", "spae")
  with pytest.raises(pipeline.DataError, match=r"lacks \['image'\]"):
    pipeline.check_features(quickstart.TASK_NAME, "spae")


@pytest.mark.parametrize(
    "mixture, task", [("spae_digits", "spae_digits_en"), ("spae_words", "spae_words")]
)
def test_gin_fragment_binds_the_task_unpacked(mixture, task):
  gin_fragments.parse_with_tiny_encoder_decoder(f"gin/mixtures/{mixture}.gin")
  assert gin.query_parameter("%MIXTURE_OR_TASK_NAME") == task
  assert gin.query_parameter("%MIXTURE_OR_TASK_MODULE") == "tasks.spae.tasks"
  lengths = gin.query_parameter("%TASK_FEATURE_LENGTHS")
  assert lengths == LENGTHS and lengths["image"] == image_corpus.get_config(mixture[5:]).side
  assert gin.query_parameter("train/DatasetConfig.pack") is False
  pipeline.check_features(task, "spae", module=gin.query_parameter("%MIXTURE_OR_TASK_MODULE"))
