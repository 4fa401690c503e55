"""The data seam: batch shapes from the converter's spec, eval batches built once and
re-iterable, and the Model's own batch layouts agreeing with SeqIO's converters."""

import itertools

import numpy as np
import pytest
import seqio
import tensorflow as tf

from model_zoo import feature_converters as fc
from tasks import pipeline, quickstart
from tests.trainers import copy_task  # noqa: F401  (registers copy_verse: inputs -> targets)
from trainers import data
from trainers.dataset_config import DatasetConfig

PROMPTS = [[7, 8, 9], [5], [4, 6]]
TARGETS = [[3, 1], [2, 2, 2, 1], [1]]
LENGTHS = {"inputs": 4, "targets": 5}


def seqio_rows(converter_cls) -> list[dict[str, np.ndarray]]:
  """SeqIO's own converter (unpacked) on the (prompt, target) examples."""
  ds = tf.data.Dataset.from_generator(
      lambda: ({"inputs": p, "targets": t} for p, t in zip(PROMPTS, TARGETS)),
      output_signature={
          "inputs": tf.TensorSpec([None], tf.int32),
          "targets": tf.TensorSpec([None], tf.int32),
      },
  )
  converted = converter_cls(pack=False)(ds, LENGTHS)
  return [{k: np.asarray(v) for k, v in row.items()} for row in converted.as_numpy_iterator()]


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (fc.PrefixLMFeatureConverter, seqio.PrefixLMFeatureConverter),
        (fc.EncDecFeatureConverter, seqio.EncDecFeatureConverter),
    ],
)
def test_scoring_batches_and_row_tokens_match_seqio_converters(ours, theirs):
  rows = seqio_rows(theirs)
  length = ours.decode_length(LENGTHS)
  batch = ours.scoring_batch(PROMPTS, TARGETS, len(PROMPTS), length)
  for i, row in enumerate(rows):
    assert ours.row_tokens(row) == (PROMPTS[i], TARGETS[i])
    ours_row = {k: v[i] for k, v in batch.items()}
    ours_row["decoder_loss_weights"] = fc.loss_weights(batch)[i]
    for name, want in row.items():
      np.testing.assert_array_equal(ours_row[name][: len(want)], want, err_msg=name)
      assert not ours_row[name][len(want) :].any(), name  # the rest is padding


@pytest.mark.parametrize(
    "task, converter, lengths, pack",
    [
        (quickstart.TASK_NAME, fc.DecoderFeatureConverter, {"targets": 32}, True),
        ("copy_verse", fc.EncDecFeatureConverter, {"inputs": 24, "targets": 16}, False),
        ("copy_verse", fc.PrefixLMFeatureConverter, {"inputs": 24, "targets": 16}, True),
    ],
)
def test_batch_shapes_from_the_spec_equal_a_real_batch(task, converter, lengths, pack):
  cfg = DatasetConfig(task, lengths, batch_size=4, pack=pack)
  shapes = data.global_batch_shapes(cfg, converter)
  first = next(iter(data.batches(cfg, converter)))
  assert shapes == {k: v.shape for k, v in first.items() if k in shapes}
  assert set(shapes) <= set(first) and "decoder_target_tokens" in shapes


def test_eval_batches_are_built_once_and_each_pass_starts_over(monkeypatch):
  built = []
  real = pipeline.seqio.get_dataset
  monkeypatch.setattr(
      pipeline.seqio, "get_dataset", lambda *a, **k: built.append(1) or real(*a, **k)
  )
  cfg = DatasetConfig(
      quickstart.TASK_NAME, {"targets": 32}, "validation", 4, shuffle=False, num_epochs=1
  )
  batches = data.batches(cfg, fc.DecoderFeatureConverter)
  first = [b["decoder_target_tokens"] for b in itertools.islice(batches, 3)]
  second = [b["decoder_target_tokens"] for b in itertools.islice(batches, 3)]
  assert len(built) == 1
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(first[0], first[1])  # three different batches, twice
