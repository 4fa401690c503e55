import itertools
import textwrap

import numpy as np
import pytest
import seqio
import tensorflow as tf

from tasks import pipeline, quickstart

TASK = "kjv_genesis_lm"
EOS = 1


def take(n, **kw):
  args = dict(
      mixture_or_task_name=TASK, task_feature_lengths={"targets": 64}, split="train", batch_size=4
  )
  return list(itertools.islice(pipeline.get_batch_iterator(**{**args, **kw}), n))


def shift_right_within_segments(targets, segments):
  """Reference: input j is target j-1 of the same segment, 0 at a segment's start."""
  shifted = np.zeros_like(targets)
  shifted[:, 1:] = targets[:, :-1]
  same = np.zeros(segments.shape, bool)
  same[:, 1:] = segments[:, 1:] == segments[:, :-1]
  return np.where(same, shifted, 0)


def test_packed_batches_are_shifted_targets():
  batches = take(8)
  keys = {
      "decoder_target_tokens",
      "decoder_input_tokens",
      "decoder_loss_weights",
      "decoder_segment_ids",
      "decoder_positions",
  }
  multi_segment_rows = 0
  for b in batches:
    assert set(b) == keys
    assert all(v.shape == (4, 64) and v.dtype == np.int32 for v in b.values())
    targets, seg, pos = b["decoder_target_tokens"], b["decoder_segment_ids"], b["decoder_positions"]
    np.testing.assert_array_equal(
        b["decoder_input_tokens"], shift_right_within_segments(targets, seg)
    )
    np.testing.assert_array_equal(b["decoder_loss_weights"], seg > 0)
    np.testing.assert_array_equal(targets > 0, seg > 0)
    starts = (seg > 0) & (pos == 0)
    np.testing.assert_array_equal(starts.sum(1), seg.max(1))  # positions restart per segment
    multi_segment_rows += int((seg.max(1) > 1).sum())
  assert multi_segment_rows > 0  # the within-segment part of the check was exercised


def test_unpacked_validation_decodes_to_the_verses():
  vocab = pipeline.get_task_or_mixture(TASK).output_features["targets"].vocabulary
  rows = [
      row
      for b in pipeline.get_batch_iterator(
          TASK, {"targets": 128}, "validation", 4, pack=False, shuffle=False, num_epochs=1
      )
      for row in b["decoder_target_tokens"]
  ]
  texts = []
  for row in rows:
    n = int(np.count_nonzero(row))
    assert row[n - 1] == EOS and not row[n:].any()
    texts.append(vocab.decode(row[: n - 1].tolist()))
  assert texts == quickstart.split_lines("validation")  # 76 verses = 19 full batches


def test_start_batch_resumes_the_same_stream():
  from_start = take(6, shuffle=True, seed=7)
  resumed = take(3, shuffle=True, seed=7, start_batch=3)
  for a, b in zip(from_start[3:], resumed, strict=True):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(
      from_start[0]["decoder_target_tokens"], from_start[3]["decoder_target_tokens"]
  )


def assert_same_batches(expected, got):
  assert len(expected) == len(got)
  for a, b in zip(expected, got):
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _shouted(ds: tf.data.Dataset) -> tf.data.Dataset:
  """Upper-cases each line in Python, as tasks that format text through NumPy do."""
  upper = lambda line: tf.numpy_function(lambda b: b.upper(), [line], tf.string)  # stateful
  return ds.map(lambda line: {"targets": tf.ensure_shape(upper(line), [])})


@pytest.fixture(scope="module")
def mixture_with_a_numpy_function():
  """The quickstart task mixed with a copy that calls tf.numpy_function (whose state tf.data
  cannot save): the mixture's sampling state and the ignored function state both resume."""
  task, mixture = "kjv_shouted_lm", "kjv_plain_and_shouted"
  if task not in seqio.TaskRegistry.names():
    seqio.TaskRegistry.add(
        task,
        source=seqio.TextLineDataSource({"train": str(quickstart.CORPUS_PATH)}),
        preprocessors=[_shouted, seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
        output_features={"targets": seqio.Feature(quickstart.quickstart_vocabulary())},
    )
    seqio.MixtureRegistry.add(mixture, [(TASK, 1.0), (task, 1.0)])
  return mixture


@pytest.mark.slow
@pytest.mark.parametrize("mixture", [False, True])
def test_a_saved_position_continues_the_stream_in_a_new_pass(tmp_path, request, mixture):
  """After save at batch 5, a new pass restored from it yields batches 5.. of an unbroken
  pass, as `start_batch=5` (the replaying fallback) does. The task's shuffle buffer and
  packing carry-over are part of the position, and a mixture's sampling state."""
  name = request.getfixturevalue("mixture_with_a_numpy_function") if mixture else TASK
  lengths, args = {"targets": 64}, dict(shuffle=True, seed=3)
  unbroken = list(
      itertools.islice(pipeline.get_batch_iterator(name, lengths, "train", 4, **args), 8)
  )
  saving = pipeline.get_batch_iterator(name, lengths, "train", 4, **args)
  list(itertools.islice(saving, 5))
  saving.save(str(tmp_path / "position"))
  for advance in (0, 1):  # the first batch is held from the emptiness check, or taken
    restored = pipeline.get_batch_iterator(name, lengths, "train", 4, **args)
    list(itertools.islice(restored, advance))
    restored.restore(str(tmp_path / "position"))  # moves back to batch 5, not 5 further
    assert_same_batches(unbroken[5:], list(itertools.islice(restored, 3)))
  replayed = pipeline.get_batch_iterator(name, lengths, "train", 4, start_batch=5, **args)
  assert_same_batches(unbroken[5:], list(itertools.islice(replayed, 3)))
  assert not np.array_equal(  # the position matters: batch 5 is not batch 0 again
      unbroken[0]["decoder_target_tokens"], unbroken[5]["decoder_target_tokens"]
  )


def test_saving_before_the_first_batch_is_refused(tmp_path):
  """The first batch is read at once (the emptiness check); tf.data is one batch ahead."""
  with pytest.raises(RuntimeError, match="before the first batch"):
    pipeline.get_batch_iterator(TASK, {"targets": 64}, "train", 4).save(str(tmp_path / "p"))


def test_each_eval_pass_starts_from_the_first_batch():
  batches = pipeline.get_batches(TASK, {"targets": 64}, "validation", 4, shuffle=False)
  first = list(itertools.islice(iter(batches), 3))
  again = list(itertools.islice(iter(batches), 3))
  assert_same_batches(first, again)


def test_shards_are_disjoint_halves():
  shards = []
  for index in (0, 1):
    rows = set()
    for b in pipeline.get_batch_iterator(
        TASK,
        {"targets": 128},
        "validation",
        8,
        pack=False,
        shuffle=False,
        num_epochs=1,
        shard_index=index,
        num_shards=2,
    ):
      assert b["decoder_target_tokens"].shape == (4, 128)
      rows.update(tuple(r) for r in b["decoder_target_tokens"])
    shards.append(rows)
  assert len(shards[0]) == len(shards[1]) == 36  # 38 examples each, 9 full batches of 4
  assert shards[0].isdisjoint(shards[1])


def test_batch_size_must_split_over_processes():
  with pytest.raises(pipeline.DataError, match="BATCH_SIZE=5.*processes \\(2\\)"):
    pipeline.get_batch_iterator(TASK, {"targets": 64}, "train", 5, num_shards=2)
  with pytest.raises(pipeline.DataError, match="shard_index=2 must be in"):
    pipeline.get_batch_iterator(TASK, {"targets": 64}, "train", 4, shard_index=2, num_shards=2)


def test_unknown_task_suggests_close_names():
  with pytest.raises(pipeline.DataError, match="Did you mean 'kjv_genesis_lm'"):
    pipeline.get_batch_iterator("kjv_genesis_lmm", {"targets": 64}, "train", 4)


def test_unknown_feature_converter_and_split():
  with pytest.raises(pipeline.DataError, match="'decoder', 'encdec', 'prefix_lm'"):
    pipeline.get_batch_iterator(TASK, {"targets": 64}, "train", 4, feature_converter="lm")
  with pytest.raises(pipeline.DataError, match="no split 'test'.*'train', 'validation'"):
    pipeline.get_batch_iterator(TASK, {"targets": 64}, "test", 4)


def test_empty_split_is_a_clear_error():
  name = "podzoo_test_empty"
  seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(
          lambda split, shuffle_files, seed=None: tf.data.Dataset.from_tensor_slices(
              {"text": tf.constant([], tf.string)}
          ),
          splits=["train"],
      ),
      preprocessors=seqio.get_mixture_or_task(TASK).preprocessors,
      output_features=seqio.get_mixture_or_task(TASK).output_features,
  )
  try:
    with pytest.raises(
        pipeline.DataError,
        match=f"'{name}' split 'train' with lengths .'targets': 64. "
        "gives no full batch of 4 rows",
    ):
      pipeline.get_batch_iterator(name, {"targets": 64}, "train", 4)
  finally:
    seqio.TaskRegistry.remove(name)


def test_task_module_is_imported(tmp_path, monkeypatch):
  (tmp_path / "podzoo_user_tasks.py").write_text(textwrap.dedent(f"""
        import seqio
        base = seqio.get_mixture_or_task({TASK!r})
        seqio.TaskRegistry.add("podzoo_user_task", source=base.source,
                               preprocessors=base.preprocessors,
                               output_features=base.output_features)
    """))
  monkeypatch.syspath_prepend(str(tmp_path))
  try:
    assert pipeline.vocab_size("podzoo_user_task", module="podzoo_user_tasks") == 1024
  finally:
    seqio.TaskRegistry.remove("podzoo_user_task")
  with pytest.raises(pipeline.DataError, match="'podzoo_no_such_tasks'.*MIXTURE_OR_TASK_MODULE"):
    pipeline.get_batch_iterator(TASK, {"targets": 64}, "train", 4, module="podzoo_no_such_tasks")
