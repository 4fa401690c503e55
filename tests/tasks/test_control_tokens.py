"""Control tokens: one id each, buckets recomputed by hand, a stable fraction, user errors."""

import re

import pytest
import seqio
import tensorflow as tf

from model_zoo.errors import ConfigError
from tasks.controlled import control_tokens as ct
from tasks.langid import train
from tasks.parallel import corpus

VOCAB = ct.control_vocabulary()
WORD_BOUNDARY = VOCAB.tokenizer.piece_to_id("▁")  # SentencePiece's prefix of an encoded text
PREFIX = re.compile(r"<lang:(\w+)><len:(\w+)> (.*)", re.S)
# Validation has 2,088 examples: at fraction 0.5 one standard deviation of the controlled
# share is 1.1 points, so 3.5 points is over 3 sigma of a fair hash.
FRACTION_TOLERANCE = 0.035


def read(split: str = "validation", **kw) -> list[dict]:
  task = seqio.get_mixture_or_task(ct.TASK_NAME)
  kw.setdefault("shuffle", False)
  return list(task.get_dataset(sequence_length=None, split=split, **kw).as_numpy_iterator())


def controlled_texts(examples: list[dict]) -> set[str]:
  texts = (ex["targets_pretokenized"].decode() for ex in examples)
  return {text for text in texts if PREFIX.fullmatch(text)}


def source_text(example: dict) -> str:
  """The corpus text of an example, without control tokens."""
  text = example["targets_pretokenized"].decode()
  match = PREFIX.fullmatch(text)
  return match[3] if match else text


@pytest.fixture(scope="module")
def examples():
  return read()


def test_every_control_token_is_one_id_and_decodes_back():
  ids = [VOCAB.tokenizer.piece_to_id(token) for token in ct.CONTROL_TOKENS]
  assert VOCAB.unk_id not in ids and len(set(ids)) == len(ct.CONTROL_TOKENS) == 4 + 3
  for token, token_id in zip(ct.CONTROL_TOKENS, ids):
    assert VOCAB.encode(token) == [WORD_BOUNDARY, token_id]
    assert VOCAB.decode([token_id]) == token
  # A prompt is its tokens, and the text after it keeps the ids it has alone.
  prompt = ct.control_prompt("de", "long")
  assert prompt == "<lang:de><len:long>"
  text = "Datei öffnen"
  assert VOCAB.encode(prompt + " " + text) == VOCAB.encode(prompt) + VOCAB.encode(text)
  assert VOCAB.decode(VOCAB.encode(prompt + " " + text)) == prompt + " " + text
  assert ct.control_prompt("fr") == "<lang:fr>" and ct.control_prompt() == ""


def test_length_bucket_boundaries_are_inclusive_upper_ends():
  assert ct.LENGTH_BOUNDARIES == (8, 15)
  expected = ["short"] * 9 + ["medium"] * 7 + ["long"] * 3  # 0..8, 9..15, 16..18
  assert [ct.length_bucket(n) for n in range(19)] == expected
  assert [ct.length_bucket(n, (1, 2)) for n in range(4)] == ["short", "short", "medium", "long"]


@pytest.mark.slow
def test_task_prepends_the_langid_language_and_the_length_bucket_recomputed(examples):
  sample = examples[::10]
  corpus_texts = {
      t for lang in ct.CONTROL_LANGUAGES for t in corpus.monolingual(lang, "validation")
  }
  annotated = []  # (text, the (language, length) the task gave it)
  for ex in sample:
    decoded = VOCAB.decode(ex["targets"].tolist())
    assert decoded == ex["targets_pretokenized"].decode()
    match = PREFIX.fullmatch(decoded)
    text = match[3] if match else decoded
    assert text in corpus_texts
    if match:
      assert ex["targets"].tolist() == VOCAB.encode(ct.control_prompt(match[1], match[2])) + (
          VOCAB.encode(text) + [VOCAB.eos_id]
      )
    given = (match[1], match[2]) if match else (ex["language"].decode(), ex["length"].decode())
    annotated.append((text, given))
  languages, _ = train.load_or_train().predict([text for text, _ in annotated])
  low, high = ct.LENGTH_BOUNDARIES
  for (text, (language, length)), predicted in zip(annotated, languages):
    n = len(VOCAB.encode(text))
    by_hand = "short" if n <= low else ("medium" if n <= high else "long")
    assert (language, length) == (predicted, by_hand), text
  assert {length for _, (_, length) in annotated} == set(ct.LENGTH_BUCKETS)
  assert 50 < len(controlled_texts(sample)) < len(sample) - 50  # both kinds were checked


def test_task_has_each_text_langid_puts_in_its_languages_once(examples):
  texts = list(
      dict.fromkeys(
          t for lang in ct.CONTROL_LANGUAGES for t in corpus.monolingual(lang, "validation")
      )
  )
  languages, _ = train.load_or_train().predict(texts)
  kept = [text for text, language in zip(texts, languages) if language in ct.CONTROL_LANGUAGES]
  assert sorted(map(source_text, examples)) == sorted(kept)
  assert 0.8 < len(kept) / len(texts) < 0.99  # measured 86.7% (91.9% when LangID knew 20 languages)


def test_prepended_fraction_is_close_to_fraction_and_the_same_on_another_pass(examples):
  chosen = controlled_texts(examples)
  assert abs(len(chosen) / len(examples) - 0.5) < FRACTION_TOLERANCE
  assert controlled_texts(read(shuffle=True, seed=7)) == chosen


def test_preprocessor_fraction_zero_one_and_nested():
  texts = [f"message {i}" for i in range(4000)]

  def chosen(fraction: float, seed: int = 0) -> set[str]:
    source = tf.data.Dataset.from_tensor_slices(
        {"targets": texts, "language": ["de"] * len(texts), "length": ["short"] * len(texts)}
    )
    out = ct.prepend_control_tokens(source, fraction, seed).batch(len(texts)).get_single_element()
    prefix = "<lang:de><len:short> "
    targets = [t.decode() for t in out["targets"].numpy()]
    return {t.removeprefix(prefix) for t in targets if t.startswith(prefix)}

  assert chosen(0.0) == set() and chosen(1.0) == set(texts)
  fifth, half = chosen(0.2), chosen(0.5)
  assert abs(len(fifth) / len(texts) - 0.2) < FRACTION_TOLERANCE and fifth < half
  assert chosen(0.5, seed=1) != half


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_fraction_out_of_range_is_a_config_error(fraction):
  with pytest.raises(
      ConfigError, match=rf"must be in \[0, 1\], e.g. fraction=0.5.*got fraction={fraction}"
  ):
    ct.prepend_control_tokens(tf.data.Dataset.from_tensor_slices({"targets": ["x"]}), fraction, 0)
  with pytest.raises(ConfigError, match="got fraction="):
    ct.register_control_token_task("controlled_lm_bad_fraction", fraction=fraction)
  assert "controlled_lm_bad_fraction" not in seqio.TaskRegistry.names()


def test_unknown_language_or_bucket_is_a_config_error():
  with pytest.raises(ConfigError, match=r"'it'.*control languages are \('en', 'de', 'fr', 'es'\)"):
    ct.control_prompt("it")
  with pytest.raises(
      ConfigError, match=r"'tiny'.*length buckets are \('short', 'medium', 'long'\)"
  ):
    ct.control_prompt("de", "tiny")
  with pytest.raises(ConfigError, match=r"non-empty subset of \('en', 'de', 'fr', 'es'\).*'it'"):
    ct.register_control_token_task("controlled_lm_it", languages=("en", "it"))
  with pytest.raises(ConfigError, match="strictly increasing"):
    ct.length_bucket(3, (5, 5))
