"""UL2 tasks: batch shapes, span statistics, exact reconstruction, seeds and mixture rates."""

import functools
import itertools

import gin
import numpy as np
import pytest
import scipy.stats
import seqio
import tensorflow as tf

from tasks import pipeline
from tasks.ul2 import denoisers, tasks as ul2, vocabulary
from tests.tasks import gin_fragments

LENGTHS = {"inputs": 256, "targets": 256}  # as gin/mixtures/ul2_kjv.gin
TASKS = [*ul2.SPAN_CORRUPTION_TASKS, ul2.PREFIX_LM_TASK]
VOCAB = vocabulary.ul2_vocabulary()
FIRST_SENTINEL = VOCAB.vocab_size - vocabulary.NUM_SENTINELS
MODE = {m: vocabulary.mode_id(VOCAB, m) for m in vocabulary.MODE_TOKENS}
EOS = 1


def fill_sentinels(inputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """NumPy reference: (source tokens, noise mask) from a span-corrupted pair, mode token first.

  Also checks the sentinel layout: the i-th span has sentinel vocab_size - 1 - i in both
  features, and targets are the sentinels each followed by its (non-empty) span.
  """
  sentinels = np.arange(VOCAB.vocab_size - 1, FIRST_SENTINEL - 1, -1)
  t_at = np.flatnonzero(targets >= FIRST_SENTINEL)
  i_at = np.flatnonzero(inputs >= FIRST_SENTINEL)
  assert t_at[0] == 0 and len(t_at) == len(i_at) and np.all(np.diff(t_at, append=len(targets)) > 1)
  np.testing.assert_array_equal(targets[t_at], sentinels[: len(t_at)])
  np.testing.assert_array_equal(inputs[i_at], sentinels[: len(i_at)])
  spans = np.split(targets, t_at[1:])
  pieces, mask = [inputs[1 : i_at[0]]], [np.zeros(i_at[0] - 1, bool)]
  for span, start, end in zip(spans, i_at, [*i_at[1:], len(inputs)]):
    pieces += [span[1:], inputs[start + 1 : end]]
    mask += [np.ones(len(span) - 1, bool), np.zeros(end - start - 1, bool)]
  return np.concatenate(pieces), np.concatenate(mask)


def count_runs(mask: np.ndarray) -> int:
  return int(np.sum(mask & ~np.concatenate([[False], mask[:-1]])))


def source_dataset(lengths) -> tuple[tf.data.Dataset, list[np.ndarray]]:
  """Sources of random ordinary ids (no special ids or mode tokens), as a dataset and as arrays."""
  rng = np.random.default_rng(0)
  sources = [rng.integers(6, FIRST_SENTINEL, n).astype(np.int32) for n in lengths]
  return (
      tf.data.Dataset.from_generator(
          lambda: ({"targets": s} for s in sources),
          output_signature={"targets": tf.TensorSpec([None], tf.int32)},
      ),
      sources,
  )


def apply(preprocessor, ds, sequence_length=None, **kw):
  """The examples of `preprocessor` (a denoiser) over `ds`, seeded, with the tasks' features."""
  with seqio.utils.map_seed_manager(0):
    out = preprocessor(
        ds, sequence_length, seqio.get_mixture_or_task(ul2.PREFIX_LM_TASK).output_features, **kw
    )
  return list(out.as_numpy_iterator())


def test_vocabulary_has_modes_and_sentinels_on_top():
  assert VOCAB.vocab_size == vocabulary.VOCAB_SIZE == 1124 == pipeline.vocab_size(ul2.MIXTURE_NAME)
  assert VOCAB.extra_ids == vocabulary.NUM_SENTINELS == 100
  sp = VOCAB.tokenizer
  assert sp.id_to_piece(1123) == "▁<extra_id_0>" and sp.id_to_piece(1024) == "▁<extra_id_99>"
  assert {m: sp.id_to_piece(i) for m, i in MODE.items()} == vocabulary.MODE_TOKENS
  corpus = VOCAB.encode(" ".join(ul2.verse_groups("train")))
  assert min(corpus) > max(MODE.values()) and max(corpus) < FIRST_SENTINEL
  with pytest.raises(ValueError, match="unknown UL2 denoiser 'Q'"):
    vocabulary.mode_id(VOCAB, "Q")


@pytest.mark.slow
@pytest.mark.parametrize("converter", ["encdec", "prefix_lm"])
@pytest.mark.parametrize("name", TASKS)
def test_batches_have_the_declared_shapes(name, converter):
  batches = pipeline.get_batch_iterator(
      name, LENGTHS, "train", 4, feature_converter=converter, shuffle=False
  )
  for batch in itertools.islice(batches, 2):
    if converter == "encdec":
      assert batch["encoder_input_tokens"].shape == batch["decoder_target_tokens"].shape == (4, 256)
    assert "decoder_causal_attention" in batch or converter == "encdec"
    width = 256 if converter == "encdec" else 512
    assert {v.shape[1] for k, v in batch.items() if k.startswith("decoder")} == {width}
    assert all(v.shape[0] == 4 and v.dtype == np.int32 for v in batch.values())


@pytest.mark.parametrize("name", list(ul2.SPAN_CORRUPTION_TASKS))
def test_span_statistics_and_reconstruction(name):
  mode, mean_span, density = ul2.SPAN_CORRUPTION_TASKS[name]
  longest = min(4096, denoisers.max_source_length(density, mean_span, vocabulary.NUM_SENTINELS))
  lengths = np.random.default_rng(1).integers(longest // 2, longest + 1, 1000)
  ds, sources = source_dataset(lengths)
  examples = apply(
      denoisers.span_corruption, ds, mode_id=MODE[mode], noise_density=density, mean_span=mean_span
  )
  noise = spans = total = first_hidden = 0
  for ex, source in zip(examples, sources, strict=True):
    assert ex["inputs"][0] == MODE[mode]
    tokens, mask = fill_sentinels(ex["inputs"], ex["targets"])
    np.testing.assert_array_equal(tokens, source)
    noise, spans, total = noise + mask.sum(), spans + count_runs(mask), total + len(mask)
    first_hidden += mask[0]
  print(f"{name}: noise density {noise / total:.4f}, mean span {noise / spans:.3f}")
  assert noise / total == pytest.approx(density, rel=0.1)
  assert noise / spans == pytest.approx(mean_span, rel=0.1)
  assert first_hidden > 0  # unlike T5's mask, which never hides the first token


def test_span_corruption_cuts_the_source_to_fit():
  ds, sources = source_dataset([300] * 20)
  corrupt = functools.partial(
      apply, denoisers.span_corruption, ds, mode_id=MODE["R"], noise_density=0.15, mean_span=3
  )
  kept = denoisers.max_source_length(0.15, 3, 100, inputs_budget=64, targets_budget=15)
  noise, spans = denoisers.span_counts(kept + 1, 0.15, 3)
  # One more source token would not fit: mode token + kept + 1 - noise + sentinels, or
  # noise + sentinels, would exceed its budget.
  inputs_needed, targets_needed = 1 + (kept + 1) - noise + spans, noise + spans
  assert inputs_needed > 64 or targets_needed > 15
  for ex, source in zip(corrupt({"inputs": 64, "targets": 16}), sources, strict=True):
    assert len(ex["inputs"]) <= 64 and len(ex["targets"]) <= 15  # room for EOS
    np.testing.assert_array_equal(fill_sentinels(ex["inputs"], ex["targets"])[0], source[:kept])
  with pytest.raises(ValueError, match="cannot fit even 2 source tokens"):
    corrupt({"inputs": 2, "targets": 2})


def test_prefix_lm_splits_uniformly_within_the_lengths():
  ds, sources = source_dataset([10] * 900)
  examples = apply(denoisers.prefix_lm, ds, mode_id=MODE["S"])
  cuts = []
  for ex, source in zip(examples, sources, strict=True):
    assert ex["inputs"][0] == MODE["S"]
    np.testing.assert_array_equal(np.concatenate([ex["inputs"][1:], ex["targets"]]), source)
    cuts.append(len(ex["inputs"]) - 1)
  assert scipy.stats.chisquare(np.bincount(cuts, minlength=10)[1:]).pvalue > 1e-3  # 1..9
  # Inputs hold the mode token + 5, targets 4 + EOS: the source is cut to 9, split 5 | 4.
  fitted = apply(denoisers.prefix_lm, ds.take(50), {"inputs": 6, "targets": 5}, mode_id=MODE["S"])
  assert {(len(ex["inputs"]), len(ex["targets"])) for ex in fitted} == {(6, 4)}


@pytest.mark.parametrize("name", TASKS)
def test_tasks_rebuild_the_verses_with_mode_and_eos(name):
  task = seqio.get_mixture_or_task(name)
  examples = list(
      task.get_dataset(LENGTHS, "validation", shuffle=False, seed=0).as_numpy_iterator()
  )
  texts = ul2.verse_groups("validation")
  assert len(examples) == len(texts) == 19
  for ex, text in zip(examples, texts):
    assert ex["targets"][-1] == EOS and EOS not in ex["inputs"]
    inputs, targets = ex["inputs"], ex["targets"][:-1]
    if name == ul2.PREFIX_LM_TASK:
      assert inputs[0] == MODE["S"]
      tokens = np.concatenate([inputs[1:], targets])
    else:
      assert inputs[0] == MODE[ul2.SPAN_CORRUPTION_TASKS[name][0]]
      tokens = fill_sentinels(inputs, targets)[0]
    assert VOCAB.decode(tokens.tolist()) == text


@pytest.mark.parametrize("name", ["ul2_kjv_x_dense", ul2.PREFIX_LM_TASK])
def test_a_seed_fixes_the_examples(name):
  task = seqio.get_mixture_or_task(name)

  def first(seed):
    ds = task.get_dataset(LENGTHS, "train", shuffle=False, seed=seed).take(10)
    return [(ex["inputs"].tolist(), ex["targets"].tolist()) for ex in ds.as_numpy_iterator()]

  a = first(1)
  assert first(1) == a != first(2)


def which_task(ex) -> str:
  """The UL2 task of a mixture example: its mode token, then for X the noise density."""
  mode = {i: m for m, i in MODE.items()}[ex["inputs"][0]]
  if mode != "X":
    return {"R": "ul2_kjv_r", "S": ul2.PREFIX_LM_TASK}[mode]
  sentinels = np.sum(ex["targets"] >= FIRST_SENTINEL)
  noise = len(ex["targets"]) - 1 - sentinels
  source = len(ex["inputs"]) - 1 - sentinels + noise
  return "ul2_kjv_x_dense" if noise / source > 0.3 else "ul2_kjv_x_long"


def test_mixture_samples_at_the_rates():
  mixture = seqio.get_mixture_or_task(ul2.MIXTURE_NAME)
  ds = mixture.get_dataset(LENGTHS, "train", shuffle=True, seed=0).take(2000)
  counts = {name: 0 for name in ul2.DEFAULT_RATES}
  for ex in ds.as_numpy_iterator():
    counts[which_task(ex)] += 1
  rates = np.array(list(ul2.DEFAULT_RATES.values()))
  expected = 2000 * rates / rates.sum()
  assert scipy.stats.chisquare(list(counts.values()), expected).pvalue > 1e-3, counts


def test_register_mixture_takes_rates_and_rejects_non_positive_ones():
  try:
    mixture = ul2.register_mixture("ul2_kjv_test", {"ul2_kjv_r": 1, "ul2_kjv_s": 3})
    assert mixture.get_rate(seqio.get_mixture_or_task("ul2_kjv_s")) == 3
    assert pipeline.vocab_size("ul2_kjv_test") == VOCAB.vocab_size
  finally:
    seqio.MixtureRegistry.remove("ul2_kjv_test")
  for bad in (0, -0.1, float("nan"), float("inf")):
    with pytest.raises(ValueError, match=r"ul2_kjv_bad.*rate of task 'ul2_kjv_s'"):
      ul2.register_mixture("ul2_kjv_bad", {"ul2_kjv_r": 0.5, "ul2_kjv_s": bad})
  with pytest.raises(ValueError, match="needs at least one task"):
    ul2.register_mixture("ul2_kjv_bad", {})
  assert "ul2_kjv_bad" not in seqio.MixtureRegistry.names()


def test_gin_fragment_matches_the_mixture():
  gin_fragments.parse_with_tiny_encoder_decoder("gin/mixtures/ul2_kjv.gin")
  assert gin.query_parameter("MIXTURE_OR_TASK_NAME/macro.value") == ul2.MIXTURE_NAME
  assert gin.query_parameter("TASK_FEATURE_LENGTHS/macro.value") == LENGTHS
  assert gin.query_parameter("TransformerConfig.vocab_size") == VOCAB.vocab_size
