"""MT tasks: translation pairs, mixture rates, MASS spans, back-translation, metrics, errors."""

import ast
import collections
import math
import pathlib
import re

import gin
import numpy as np
import pytest
import sacrebleu
import seqio
import tensorflow as tf
from scipy import stats

from model_zoo.errors import ConfigError
from tasks import pipeline, vocabularies
from tasks.mt import back_translation, features, mass, tasks as mt
from tasks.parallel import corpus, tfds_dataset, vocabulary
from tests.tasks import gin_fragments
from trainers.dataset_config import DatasetConfig

GIN_FILE = pathlib.Path(__file__).parents[2] / "gin" / "mixtures" / "mt.gin"
# Longer than any corpus text (257 tokens at most), so nothing is cut.
WHOLE = {"inputs": 320, "targets": 320}
VOCAB = vocabulary.parallel_vocabulary()
TAG = {
    lang: VOCAB.tokenizer.piece_to_id(vocabulary.language_tag(lang)) for lang in corpus.LANGUAGES
}
MASK = VOCAB.tokenizer.piece_to_id(vocabulary.MASK_TOKEN)
EOS = 1
# Task name -> (source, target), for English to every language and back.
PAIRS = {
    mt.task_name(*pair): pair
    for lang in corpus.LANGUAGES[1:]
    for pair in (("en", lang), (lang, "en"))
}


def gin_lengths() -> dict[str, int]:
  match = re.search(r"^TASK_FEATURE_LENGTHS = (\{.*\})$", GIN_FILE.read_text(), re.M)
  return ast.literal_eval(match[1])


def decoded_pairs(name: str) -> list[tuple[str, str]]:
  """(inputs text without the tag, targets text) of every validation row, via the encdec batches."""
  source, target = PAIRS[name]
  batches = pipeline.get_batch_iterator(
      name,
      WHOLE,
      "validation",
      1,
      feature_converter="encdec",
      pack=False,
      shuffle=False,
      num_epochs=1,
  )
  pairs = []
  for batch in batches:
    inputs, targets = batch["encoder_input_tokens"][0], batch["decoder_target_tokens"][0]
    assert inputs[0] == TAG[target]
    assert targets[targets > 0][-1] == EOS and EOS not in inputs
    pairs.append((VOCAB.decode(inputs[1:].tolist()), VOCAB.decode(targets.tolist())))
  return pairs


@pytest.mark.slow
@pytest.mark.parametrize(
    "source,target", [("en", "de"), ("en", "el"), ("ru", "en"), ("en", "zh_TW"), ("sr@latin", "en")]
)
def test_translation_rows_are_the_corpus_pairs_and_swap_with_the_reverse(source, target):
  forward = decoded_pairs(mt.task_name(source, target))
  expected = corpus.pairs(source, target, "validation")
  assert collections.Counter(forward) == collections.Counter(expected)
  backward = decoded_pairs(mt.task_name(target, source))
  assert collections.Counter(backward) == collections.Counter((t, s) for s, t in forward)


@pytest.mark.parametrize("name", ["mt_en_de", "mt_de_en", "mt_el_en"])
def test_packed_train_batches_have_the_gin_shapes_and_a_tag_per_segment(name):
  lengths = gin_lengths()
  batch = next(
      pipeline.get_batch_iterator(
          name, lengths, "train", 8, feature_converter="encdec", shuffle=False
      )
  )
  encoder = ("input_tokens", "segment_ids", "positions")
  decoder = ("input_tokens", "target_tokens", "loss_weights", "segment_ids", "positions")
  assert {k: v.shape for k, v in batch.items()} == {
      **{f"encoder_{k}": (8, lengths["inputs"]) for k in encoder},
      **{f"decoder_{k}": (8, lengths["targets"]) for k in decoder},
  }
  starts = (batch["encoder_positions"] == 0) & (batch["encoder_segment_ids"] > 0)
  assert starts.sum() > 8  # packed: several examples a row
  np.testing.assert_array_equal(batch["encoder_input_tokens"][starts], TAG[PAIRS[name][1]])


def test_gin_file_matches_the_vocabulary_and_holds_99_percent():
  assert pipeline.vocab_size(mt.MIXTURE_NAME) == vocabulary.VOCAB_SIZE == 8192
  assert f"TransformerConfig.vocab_size = {vocabulary.VOCAB_SIZE}" in GIN_FILE.read_text()
  lengths = gin_lengths()
  sp = VOCAB.tokenizer
  sizes = np.array(
      [
          (1 + len(sp.encode(s)), len(sp.encode(t)) + 1)  # the tag; EOS
          for lang in corpus.LANGUAGES[1:]
          for s, t in corpus.pairs("en", lang, "validation")
      ]
  )
  sizes = np.concatenate([sizes, sizes[:, ::-1]])  # and the reverse tasks
  assert np.mean(sizes <= [lengths["inputs"], lengths["targets"]], axis=0).min() >= 0.99


def train_counts(tasks: list[str]) -> np.ndarray:
  """Independent n per task: corpus records with both languages."""
  return np.array([len(corpus.pairs(*PAIRS[name], "train")) for name in tasks])


def test_task_names_are_seqio_names_for_every_language():
  assert mt.task_name("en", "sr@latin") == "mt_en_sr.latin"
  assert mt.mass_task_name("ca@valencia") == "mass_ca.valencia"
  assert mt.task_name("zh_TW", "en") == "mt_zh_TW_en"
  names = set(seqio.TaskRegistry.names())
  assert set(PAIRS) <= names
  assert {mt.mass_task_name(lang) for lang in corpus.LANGUAGES} <= names


def test_mixing_rates_follow_the_temperature_and_check_their_arguments():
  tasks = mt.default_translation_tasks()
  assert len(tasks) == 2 * (len(corpus.LANGUAGES) - 1) == len(set(tasks))
  assert sorted(tasks) == sorted(PAIRS)
  n = train_counts(tasks)
  for temperature in (0.5, 1.0, 5.0, 1e9):
    rates = mt.mixing_rates(temperature)
    np.testing.assert_allclose(
        [rates[t] for t in tasks], n ** (1 / temperature) / np.sum(n ** (1 / temperature))
    )
  mixture = seqio.get_mixture_or_task(mt.MIXTURE_NAME)
  assert sorted(t.name for t in mixture.tasks) == sorted(tasks)
  for name, rate in mt.mixing_rates(mt.DEFAULT_TEMPERATURE).items():
    task = seqio.get_mixture_or_task(name)
    assert mixture.get_rate(task) / mixture.total_rate == pytest.approx(rate)
  for bad in (0.0, -1.0, float("nan")):
    with pytest.raises(ValueError, match="temperature must be > 0"):
      mt.mixing_rates(bad)
  with pytest.raises(ValueError, match=r"\['mt_xx_en'\].*add_translation_task"):
    mt.register_mixture("mt_test_unknown", 1.0, ["mt_en_de", "mt_xx_en"])


def which_task(example, owners) -> str | None:
  """The task of a mixture example: the tag names the target; into English, the (source,
  target) pair names the source language when only one language has it (else None)."""
  target = next(lang for lang, i in TAG.items() if i == example["inputs"][0])
  if target != "en":
    return mt.task_name("en", target)
  pair = (example["inputs_pretokenized"].decode(), example["targets_pretokenized"].decode())
  sources = owners[pair]
  return mt.task_name(next(iter(sources)), "en") if len(sources) == 1 else None


def languages_with_records(threshold: int) -> list[str]:
  """The languages with at least `threshold` corpus records, counted here from the records."""
  counts = collections.Counter(
      lang for split in corpus.SPLITS for r in corpus.split_records(split) for lang in r.texts
  )
  return [lang for lang in corpus.LANGUAGES[1:] if counts[lang] >= threshold]


@pytest.mark.slow
def test_mixture_samples_tasks_at_the_temperature_rates():
  # The 27 languages with >= 5000 messages: the sampled mixture of mt.gin's threshold.
  name = mt.mt_mixture(5000)
  tasks = mt.default_translation_tasks(corpus.languages_with(5000))
  assert sorted(t.name for t in seqio.get_mixture_or_task(name).tasks) == sorted(tasks)
  languages = [PAIRS[t][1] for t in tasks if t.startswith("mt_en_")]
  owners = collections.defaultdict(set)  # (source text, English text) -> source languages
  for lang in languages:
    for pair in set(corpus.pairs(lang, "en", "train")):
      owners[pair].add(lang)
  # The share of a task's examples which_task can attribute: 1 out of English.
  known = np.array(
      [
          np.mean([len(owners[p]) == 1 for p in corpus.pairs(*PAIRS[name], "train")])
          if PAIRS[name][1] == "en"
          else 1.0
          for name in tasks
      ]
  )
  ds = seqio.get_mixture_or_task(name).get_dataset(
      gin_lengths(), "train", shuffle=False, seed=1, num_epochs=None, copy_pretokenized=True
  )
  found = [which_task(ex, owners) for ex in ds.take(1500).as_numpy_iterator()]
  observed = np.array([found.count(name) for name in tasks])
  assert observed.sum() > 0.9 * len(found)

  def pvalue(temperature):
    rates = mt.mixing_rates(temperature, tasks)
    expected = np.array([rates[name] for name in tasks]) * known
    return stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue

  assert pvalue(mt.DEFAULT_TEMPERATURE) > 1e-3
  assert pvalue(0.2) < 1e-6  # rates ~ n**5: what swapping T and 1/T would sample


def mixture_after_gin(*flags: str) -> str:
  """The mixture name that train's DatasetConfigs get from gin/mixtures/mt.gin and `flags`."""
  gin_fragments.parse_with_tiny_encoder_decoder("gin/mixtures/mt.gin", flags)
  try:
    names = set()
    for scope in ("train", "validation", "infer_eval"):
      with gin.config_scope(scope):
        names.add(DatasetConfig().mixture_or_task_name)
    (name,) = names
    return name
  finally:
    gin.clear_config()


def test_gin_threshold_picks_the_languages_after_every_flag():
  assert mixture_after_gin() == "mt_multilingual_min1000_t5"
  name = mixture_after_gin("--gin.mt_mixture.min_messages=5000", "--gin.mt_mixture.temperature=1.0")
  assert name == "mt_multilingual_min5000_t1" == mt.mt_mixture(5000, 1.0)
  mixture = seqio.get_mixture_or_task(name)
  expected = mt.default_translation_tasks(["en", *languages_with_records(5000)])
  assert sorted(t.name for t in mixture.tasks) == sorted(expected)
  rates = mt.mixing_rates(1.0, expected)
  for task in mixture.tasks:
    assert mixture.get_rate(task) / mixture.total_rate == pytest.approx(rates[task.name])
  assert {t.name for t in seqio.get_mixture_or_task(mt.mt_mixture()).tasks} == set(PAIRS)
  most = max(corpus.message_counts()[lang] for lang in corpus.LANGUAGES[1:])
  for bad in (corpus.MIN_MESSAGES - 1, most + 1):
    with pytest.raises(ConfigError, match=rf"mt_mixture.min_messages={bad}: .*\[1000, {most}\]"):
      mixture_after_gin(f"--gin.mt_mixture.min_messages={bad}")


# --- MASS ---------------------------------------------------------------------------------
def source_texts(name: str, lang: str) -> list[str]:
  """The non-empty `lang` texts of the validation split in the TFDS source's own order."""
  ds = seqio.get_mixture_or_task(name).source.get_dataset("validation", shuffle=False)
  return [t.decode() for t in (ex[lang] for ex in ds.as_numpy_iterator()) if t]


def mass_examples(lang: str, seed: int) -> list[dict]:
  ds = seqio.get_mixture_or_task(mt.mass_task_name(lang)).get_dataset(
      WHOLE, "validation", shuffle=False, seed=seed
  )
  return list(ds.as_numpy_iterator())


def unmask(example) -> tuple[list[int], int]:
  """(text tokens with the span put back, span start); checks tag, contiguity and EOS."""
  inputs, targets = example["inputs"], example["targets"]
  assert targets[-1] == EOS and EOS not in targets[:-1]
  hidden = np.flatnonzero(inputs[1:] == MASK)
  assert len(hidden) and np.all(np.diff(hidden) == 1), "one contiguous span"
  assert len(hidden) == len(targets) - 1
  tokens = inputs[1:].copy()
  tokens[hidden] = targets[:-1]
  return tokens.tolist(), int(hidden[0])


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["en", "de", "el", "ru"])
def test_mass_hides_one_half_span_that_fills_back_to_the_text(lang):
  texts = source_texts(mt.mass_task_name(lang), lang)
  assert sorted(texts) == sorted(
      r.texts[lang] for r in corpus.split_records("validation") if lang in r.texts
  )
  examples = mass_examples(lang, seed=1)
  assert len(examples) == len(texts)
  for example, text in zip(examples, texts):
    assert example["inputs"][0] == TAG[lang]
    tokens, _ = unmask(example)
    assert tokens == VOCAB.encode(text)
    assert len(example["targets"]) - 1 == max(1, math.ceil(len(tokens) / 2))


def test_mass_seed_fixes_the_spans():
  def spans(seed):
    return [(ex["inputs"].tolist(), ex["targets"].tolist()) for ex in mass_examples("fr", seed)]

  first = spans(1)
  assert spans(1) == first != spans(2)


def test_mass_span_starts_are_uniform_and_fit_the_lengths():
  num_tokens = 9  # span of 5 tokens, starts 0..4
  ds = tf.data.Dataset.from_tensor_slices(
      {"targets": np.arange(10, 10 + num_tokens)[None].repeat(1000, 0)}
  )
  output_features = features.output_features(VOCAB)
  with seqio.utils.map_seed_manager(0):
    masked = mass.mass(ds, None, output_features, tag_id=7, mask_id=MASK)
    examples = list(masked.as_numpy_iterator())
  starts = []
  for ex in examples:
    assert len(ex["targets"]) == math.ceil(num_tokens / 2)
    ex = {"inputs": ex["inputs"], "targets": np.append(ex["targets"], EOS)}
    tokens, start = unmask(ex)
    assert tokens == list(range(10, 10 + num_tokens)) and ex["inputs"][0] == 7
    starts.append(start)
  assert stats.chisquare(np.bincount(starts, minlength=5)).pvalue > 1e-3
  # Inputs of 8 hold the tag + 7 tokens; targets of 4 hold 3 + EOS, so at most 6 tokens.
  with seqio.utils.map_seed_manager(0):
    fitted = mass.mass(
        ds.take(5), {"inputs": 8, "targets": 4}, output_features, tag_id=7, mask_id=MASK
    )
  assert {(len(ex["inputs"]), len(ex["targets"])) for ex in fitted.as_numpy_iterator()} == {(7, 3)}
  with pytest.raises(ValueError, match="MASS needs room"):
    mass.mass(ds, {"inputs": 1, "targets": 4}, output_features, tag_id=7, mask_id=MASK)


# --- back-translation ---------------------------------------------------------------------
def reverse_words(texts):
  return [" ".join(reversed(t.split())) for t in texts]


def test_back_translate_pairs_predictions_with_the_texts_in_batches():
  texts = ["ein zwei drei", "Grüße aus Köln", "x", "a b", "", "über alles", "z y"]
  calls = []

  def predict_fn(batch):
    calls.append(list(batch))
    return reverse_words(batch)

  ds = tf.data.Dataset.from_tensor_slices({"targets": texts})
  out = back_translation.back_translate(ds, predict_fn=predict_fn, batch_size=3)
  got = [(ex["inputs"].decode(), ex["targets"].decode()) for ex in out.as_numpy_iterator()]
  assert got == list(zip(reverse_words(texts), texts))
  assert calls == [texts[0:3], texts[3:6], texts[6:]]
  bad = back_translation.back_translate(ds, predict_fn=lambda batch: batch[:1], batch_size=3)
  with pytest.raises(tf.errors.OpError, match="one translation per input"):
    list(bad.as_numpy_iterator())


def test_back_translation_task_tokenizes_and_tags_like_the_translation_tasks():
  name = "mt_test_back_translated_de_en"
  if name not in seqio.TaskRegistry.names():
    mt.register_back_translation_task(name, reverse_words, source="de", target="en")
  ds = seqio.get_mixture_or_task(name).get_dataset(WHOLE, "validation", shuffle=False)
  texts = source_texts(name, "en")
  examples = list(ds.take(50).as_numpy_iterator())
  assert len(examples) == 50
  for ex, text in zip(examples, texts):
    (source,) = reverse_words([text])
    assert ex["inputs_pretokenized"].decode() == source
    assert ex["inputs"].tolist() == [TAG["en"], *VOCAB.encode(source)]
    assert ex["targets"].tolist() == [*VOCAB.encode(text), EOS]


# --- metrics and errors -------------------------------------------------------------------
def test_task_metrics_equal_sacrebleu_through_seqio():
  task = seqio.get_mixture_or_task("mt_en_de")
  targets = ["Die Datei wurde nicht gefunden.", "Ordner öffnen", "Fehler beim Lesen der Datei"]
  predictions = ["Die Datei wurde nicht gefunden", "Öffne den Ordner", "Fehler beim Lesen"]
  rows = [VOCAB.encode(p) + [EOS] for p in predictions]
  model_output = np.zeros((len(rows), max(map(len, rows)) + 2), np.int32)
  for i, row in enumerate(rows):
    model_output[i, : len(row)] = row
  inputs = [
      {"targets_pretokenized": t.encode(), "targets": np.array(VOCAB.encode(t))} for t in targets
  ]
  results = {}
  for fn in task.predict_metric_fns:
    metric = seqio.metrics.LegacyMetric.empty(fn, task.postprocess_fn)
    results.update(metric.from_model_output(inputs, model_output, task.output_features).compute())
  assert results == {
      "bleu": pytest.approx(sacrebleu.corpus_bleu(predictions, [targets]).score),
      "chrf": pytest.approx(sacrebleu.corpus_chrf(predictions, [targets]).score),
  }
  assert 0 < results["bleu"] < 100 and 0 < results["chrf"] < 100


def test_an_author_adds_a_pair_and_mixes_it():
  task = mt.add_translation_task("de", "fr")
  assert task.name == mt.task_name("de", "fr") == "mt_de_fr"
  assert mt.add_translation_task("de", "fr") is task  # registering again is harmless
  first = next(task.get_dataset(WHOLE, "validation", shuffle=False).as_numpy_iterator())
  assert first["inputs"][0] == TAG["fr"]
  pair = (first["inputs_pretokenized"].decode(), first["targets_pretokenized"].decode())
  assert pair in corpus.pairs("de", "fr", "validation")
  rates = mt.mixing_rates(1.0, ["mt_de_fr", "mt_en_de"])
  n = np.array([len(corpus.pairs(s, t, "train")) for s, t in (("de", "fr"), ("en", "de"))])
  assert rates["mt_de_fr"] == pytest.approx(n[0] / n.sum())


def vocabulary_without_tags(tmp_path) -> seqio.SentencePieceVocabulary:
  """A small vocabulary of English text, with no <2xx> tags or [MASK]."""
  text = tmp_path / "text.txt"
  text.write_text("\n".join(corpus.monolingual("en", "train")[:1000]) + "\n")
  return seqio.SentencePieceVocabulary(
      vocabularies.train_sentencepiece([text], tmp_path / "spm", 300, byte_fallback=False)
  )


def test_errors_name_the_problem(tmp_path):
  with pytest.raises(ValueError, match="languages .* got 'xx'"):
    mt.add_translation_task("en", "xx")
  with pytest.raises(ValueError, match="two different languages"):
    mt.add_translation_task("de", "de")
  no_tags = vocabulary_without_tags(tmp_path)
  with pytest.raises(pipeline.DataError, match=r"\['<2fr>'\]"):
    mt.add_translation_task("de", "fr", vocabulary=no_tags)
  with pytest.raises(pipeline.DataError, match=r"\['<2de>', '\[MASK\]'\]"):
    mt.add_mass_task("de", vocabulary=no_tags)
  with pytest.raises(pipeline.DataError, match=r"\['<2en>'\]"):
    mt.register_back_translation_task(
        "mt_test_no_tags", reverse_words, "de", "en", vocabulary=no_tags
    )
  assert "mt_test_no_tags" not in seqio.TaskRegistry.names()


def test_tasks_read_the_tfds_source():
  for name in ("mt_en_de", "mass_de"):
    source = seqio.get_mixture_or_task(name).source
    assert (
        isinstance(source, seqio.TfdsDataSource)
        and source.tfds_dataset.name == tfds_dataset.tfds_name()
    )
