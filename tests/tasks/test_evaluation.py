import numpy as np
import pytest
import sacrebleu
import seqio
import tensorflow as tf

from tasks import evaluation, metrics, pipeline, quickstart

LM_TASK = "podzoo_test_eval_lm"
SEQ2SEQ_TASK = "podzoo_test_eval_seq2seq"
NO_METRICS_TASK = "podzoo_test_eval_no_metrics"
EMPTY_TASK = "podzoo_test_eval_empty"
MIXTURE = "podzoo_test_eval_mixture"
TARGETS = [  # 5 examples: batches of 2 leave a padded last batch
    "in the beginning god created the heaven and the earth",
    "and god said let there be light",
    "and there was light",
    "and god saw the light that it was good",
    "and the evening and the morning were the first day",
]
LENGTHS = {"inputs": 8, "targets": 24}
EOS = 1
SEEN_SCORES = []  # (targets, scores) as the score metric received them


def record_scores(targets, scores):
  SEEN_SCORES.append((list(targets), np.asarray(scores)))
  return {}


def _register():
  vocab = quickstart.quickstart_vocabulary()
  examples = [{"inputs": f"example {i}", "targets": t} for i, t in enumerate(TARGETS)]

  def add(name, features, metric_fns, examples=examples):
    def dataset_fn(split, shuffle_files, seed=None):
      del split, shuffle_files, seed
      return tf.data.Dataset.from_tensor_slices(
          {k: tf.constant([ex[k] for ex in examples], tf.string) for k in features}
      )

    seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(dataset_fn, splits=("validation",)),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
        output_features={k: seqio.Feature(vocab, add_eos=True) for k in features},
        metric_fns=metric_fns,
    )

  all_metrics = [metrics.accuracy, metrics.bleu, metrics.mean_log_likelihood, record_scores]
  add(LM_TASK, ["targets"], all_metrics)
  add(SEQ2SEQ_TASK, ["inputs", "targets"], all_metrics)
  add(NO_METRICS_TASK, ["targets"], [])
  add(EMPTY_TASK, ["targets"], all_metrics, examples=[])
  seqio.MixtureRegistry.add(MIXTURE, [LM_TASK, NO_METRICS_TASK], default_rate=1.0)


if LM_TASK not in seqio.TaskRegistry.names():
  _register()
VOCAB = quickstart.quickstart_vocabulary()


def target_tokens(batch):
  """Each row's target tokens (where the loss is), left-aligned, 0-padded.

  The same rule serves every converter: for "encdec" and targets-only "decoder" the
  weighted tokens are all of decoder_target_tokens; for "prefix_lm" (and "decoder" on a
  task with inputs, which seqio turns into a prefix LM) they are the part after the
  inputs, which is what a prefix LM's predict_batch generates.
  """
  out = np.zeros_like(batch["decoder_target_tokens"])
  for row, tokens, weights in zip(
      out, batch["decoder_target_tokens"], batch["decoder_loss_weights"]
  ):
    kept = tokens[weights > 0]
    row[: len(kept)] = kept
  return out


def token_sum_score(batch):
  """A distinct score per example: the sum of its target token ids (EOS included)."""
  return target_tokens(batch).sum(1).astype(np.float32)


def expected_score(target):
  return float(sum(VOCAB.encode(target)) + EOS)


def evaluate(task=LM_TASK, batch_size=2, **kw):
  args = dict(
      feature_converter="decoder",
      predict_fn=target_tokens,
      score_fn=token_sum_score,
  )
  SEEN_SCORES.clear()
  return evaluation.evaluate_task(task, LENGTHS, "validation", batch_size, **{**args, **kw})


@pytest.mark.parametrize(
    "task,converter",
    [
        (LM_TASK, "decoder"),
        (SEQ2SEQ_TASK, "decoder"),
        (SEQ2SEQ_TASK, "encdec"),
        (SEQ2SEQ_TASK, "prefix_lm"),
    ],
)
def test_perfect_predictions_and_scores_in_order(task, converter):
  batches = []

  def predict(batch):
    batches.append(batch)
    return target_tokens(batch)

  results = evaluate(task, feature_converter=converter, predict_fn=predict)
  want = np.mean([expected_score(t) for t in TARGETS])
  assert results == {
      task: {
          "accuracy": 100.0,
          "bleu": pytest.approx(100.0),
          "mean_log_likelihood": pytest.approx(want),
      }
  }
  # The score metric got every example's own score, in dataset order, padding dropped.
  [(seen_targets, seen_scores)] = SEEN_SCORES
  assert seen_targets == TARGETS
  np.testing.assert_array_equal(seen_scores, [expected_score(t) for t in TARGETS])
  # 5 examples in static batches of 2: the last batch is padded with one all-zero row.
  assert [len(b["decoder_target_tokens"]) for b in batches] == [2, 2, 2]
  assert all(v.dtype == np.int32 for b in batches for v in b.values())
  assert not any(v[1].any() for v in batches[-1].values())
  assert batches[-1]["decoder_target_tokens"][0].any()


def test_wrong_predictions_match_the_libraries_on_decoded_strings():
  wrong = TARGETS[1]
  tokens = VOCAB.encode(wrong) + [EOS]

  def predict(batch):
    out = np.zeros((len(batch["decoder_target_tokens"]), 20), np.int32)
    out[:, : len(tokens)] = tokens
    out[:, len(tokens) :] = 7  # after EOS: must be ignored by decoding
    return out

  got = evaluate(predict_fn=predict)[LM_TASK]
  predictions = [wrong] * len(TARGETS)
  assert got["accuracy"] == pytest.approx(100 / 5)
  assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, [TARGETS]).score)
  assert 0 < got["bleu"] < 100


def test_sharded_process_sees_its_rows_and_returns_the_global_batch():
  global_batches = []

  def record(batch):
    global_batches.append(batch)
    return target_tokens(batch)

  evaluate(predict_fn=record, batch_size=4)
  local_batches = {target_tokens: [], token_sum_score: []}

  def all_gathered(fn):
    """Shard 1's function: its rows in, the global batch's outputs out (as an all-gather)."""

    def shard_fn(batch):
      seen = local_batches[fn]
      seen.append(batch)
      return fn(global_batches[len(seen) - 1])

    return shard_fn

  results = evaluate(
      predict_fn=all_gathered(target_tokens),
      score_fn=all_gathered(token_sum_score),
      batch_size=4,
      shard_index=1,
      num_shards=2,
  )
  assert results[LM_TASK]["accuracy"] == 100.0
  np.testing.assert_array_equal(SEEN_SCORES[0][1], [expected_score(t) for t in TARGETS])
  assert len(global_batches) == 2
  for seen in local_batches.values():
    assert len(seen) == 2
    for local, full in zip(seen, global_batches):
      assert set(local) == set(full)
      for k in full:
        np.testing.assert_array_equal(local[k], full[k][2:4])


def test_output_of_only_the_local_rows_is_refused():
  with pytest.raises(ValueError, match=r"whole global batch.*got shape \(2,"):
    evaluate(batch_size=4, num_shards=2)


def test_task_without_metrics_gets_an_empty_dict():
  results = evaluate(MIXTURE)
  assert results[NO_METRICS_TASK] == {}
  assert results[LM_TASK]["accuracy"] == 100.0
  assert set(results) == {LM_TASK, NO_METRICS_TASK}


def test_only_metric_free_tasks_read_no_data():
  def fail(batch):
    raise AssertionError("no metric needs a model output")

  assert evaluate(NO_METRICS_TASK, predict_fn=fail, score_fn=fail) == {NO_METRICS_TASK: {}}


def test_empty_split_is_named():
  with pytest.raises(pipeline.DataError, match=f"{EMPTY_TASK}.*no examples"):
    evaluate(EMPTY_TASK)


def test_missing_model_function_is_named():
  with pytest.raises(ValueError, match=f"{LM_TASK}.*need score_fn"):
    evaluate(score_fn=None)
  with pytest.raises(ValueError, match=f"{LM_TASK}.*need predict_fn"):
    evaluate(predict_fn=None)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(feature_converter="t5"), "feature_converter='t5'"),
        (dict(num_shards=3), "batch_size=2, num_shards=3"),
        (dict(shard_index=1), "shard_index=1"),
        (dict(task="podzoo_test_eval_lmm"), "Did you mean"),
    ],
)
def test_bad_settings_fail_early(kw, match):
  with pytest.raises(pipeline.DataError, match=match):
    evaluate(**kw)


def test_unknown_split_is_named():
  with pytest.raises(pipeline.DataError, match="no split 'test'"):
    evaluation.evaluate_task(
        LM_TASK, LENGTHS, "test", 2, feature_converter="decoder", predict_fn=None, score_fn=None
    )


def test_format_table():
  table = evaluation.format_table(
      {"mt": {"bleu": 23.45678, "accuracy": 100.0}, "lm": {}, "asr": {"wer": 7.5}}
  )
  assert table.splitlines() == [
      "task  metric           value",
      "----  ------------  --------",
      "mt    accuracy      100.0000",
      "mt    bleu           23.4568",
      "lm    (no metrics)",
      "asr   wer             7.5000",
  ]


def test_predictions_of_different_widths_per_batch():
  widths = iter([9, 24, 13])

  def predict(batch):
    tokens = target_tokens(batch)
    out = np.zeros((len(tokens), next(widths)), np.int32)
    out[:, : min(out.shape[1], tokens.shape[1])] = tokens[:, : out.shape[1]]
    return out

  # The 9-wide batch cuts off example 0 (15 tokens + EOS); the others fit.
  assert evaluate(predict_fn=predict)[LM_TASK]["accuracy"] == pytest.approx(100 * 4 / 5)


def test_metric_values_become_floats():
  assert evaluation._as_float("t", "m", seqio.metrics.Scalar(3)) == 3.0
  assert isinstance(evaluation._as_float("t", "m", np.int64(2)), float)
  with pytest.raises(TypeError, match="metric 'm' of task 't' returned Text"):
    evaluation._as_float("t", "m", seqio.metrics.Text("hello"))


def test_one_evaluator_reads_the_split_once_and_judges_each_model_afresh(monkeypatch):
  """A run evaluates every N steps: the split is read once, each call scores the new fns."""
  built = []
  real = evaluation.seqio.Evaluator
  monkeypatch.setattr(
      evaluation.seqio, "Evaluator", lambda *a, **k: built.append(1) or real(*a, **k)
  )
  evaluator = evaluation.TaskEvaluator(
      LM_TASK, LENGTHS, "validation", 2, feature_converter="decoder"
  )
  perfect = evaluator.evaluate(target_tokens, token_sum_score)

  def first_token_wrong(batch):
    tokens = target_tokens(batch)
    tokens[:, 0] = np.where(tokens[:, 0] == 5, 6, 5)
    return tokens

  worse = evaluator.evaluate(first_token_wrong, token_sum_score)
  again = evaluator.evaluate(target_tokens, token_sum_score)
  assert len(built) == 1
  assert perfect == again and perfect[LM_TASK]["accuracy"] == 100.0
  assert worse[LM_TASK]["accuracy"] == 0.0
