import jiwer
import numpy as np
import pytest
import sacrebleu
import seqio
from rouge_score import rouge_scorer

from tasks import metrics

TARGETS = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void.",
    "And God said, Let there be light: and there was light.",
]
PREDICTIONS = [
    "In the beginning God created the heavens and the earth.",
    "And the earth was without form, and void.",
    "Then God said, let there be light, and there was light.",
]
PREDICT_METRICS = [
    metrics.accuracy,
    metrics.bleu,
    metrics.chrf,
    metrics.chrf_plus_plus,
    metrics.wer,
    metrics.cer,
    metrics.rouge,
]


def test_accuracy_is_percent_of_exact_matches():
  assert metrics.accuracy(TARGETS, PREDICTIONS)["accuracy"] == pytest.approx(100 / 3)
  assert metrics.accuracy(["a", "b"], ["a", "b"]) == {"accuracy": 100.0}
  assert metrics.accuracy(["a"], ["a "]) == {"accuracy": 0.0}  # no normalisation


def test_bleu_matches_sacrebleu():
  got = metrics.bleu(TARGETS, PREDICTIONS)["bleu"]
  assert got == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, [TARGETS]).score)
  assert 0 < got < 100
  assert metrics.bleu(TARGETS, TARGETS)["bleu"] == pytest.approx(100)


def test_bleu_tokenizer_option_reaches_sacrebleu():
  targets, predictions = ["我们今天去公园"], ["我们明天去公园"]
  got = metrics.bleu(targets, predictions, tokenize="zh")["bleu"]
  assert got == pytest.approx(sacrebleu.corpus_bleu(predictions, [targets], tokenize="zh").score)
  assert got != pytest.approx(metrics.bleu(targets, predictions)["bleu"])


def test_chrf_and_chrf_plus_plus_match_sacrebleu():
  chrf = metrics.chrf(TARGETS, PREDICTIONS)["chrf"]
  chrf_pp = metrics.chrf_plus_plus(TARGETS, PREDICTIONS)["chrf++"]
  assert chrf == pytest.approx(sacrebleu.corpus_chrf(PREDICTIONS, [TARGETS]).score)
  assert chrf_pp == pytest.approx(
      sacrebleu.CHRF(word_order=2).corpus_score(PREDICTIONS, [TARGETS]).score
  )
  assert chrf != pytest.approx(chrf_pp)


def test_wer_and_cer_match_jiwer_in_percent():
  assert metrics.wer(TARGETS, PREDICTIONS)["wer"] == pytest.approx(
      100 * jiwer.wer(TARGETS, PREDICTIONS)
  )
  assert metrics.cer(TARGETS, PREDICTIONS)["cer"] == pytest.approx(
      100 * jiwer.cer(TARGETS, PREDICTIONS)
  )


def test_wer_and_cer_by_hand():
  assert metrics.wer(["a b c"], ["a x c"])["wer"] == pytest.approx(100 / 3)
  # Corpus level: 1 substitution + 1 deletion over 3 + 2 reference words.
  assert metrics.wer(["a b c", "d e"], ["a x c", "d"])["wer"] == pytest.approx(100 * 2 / 5)
  assert metrics.cer(["abcd"], ["abd"])["cer"] == pytest.approx(100 / 4)


def test_rouge_matches_rouge_score_mean_f_measure():
  scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=True)
  scores = [scorer.score(t, p) for t, p in zip(TARGETS, PREDICTIONS)]
  got = metrics.rouge(TARGETS, PREDICTIONS)
  assert set(got) == {"rouge1", "rouge2", "rougeLsum"}
  for key, value in got.items():
    assert value == pytest.approx(100 * np.mean([s[key].fmeasure for s in scores]))
  assert got["rouge1"] > got["rouge2"]


def test_rouge_by_hand():
  # Unigrams: 2 of 3 match both ways (F = 2/3); bigrams: "the cat" only, 1 of 2 each.
  got = metrics.rouge(["the cat sat"], ["the cat ran"])
  assert got["rouge1"] == pytest.approx(100 * 2 / 3)
  assert got["rouge2"] == pytest.approx(50)


def test_mean_log_likelihood():
  assert metrics.mean_log_likelihood(["a", "b", "c"], np.array([-1.0, -2.0, -6.0])) == {
      "mean_log_likelihood": pytest.approx(-3.0)
  }


@pytest.mark.parametrize("fn", PREDICT_METRICS + [metrics.mean_log_likelihood])
def test_length_mismatch_names_both_lengths(fn):
  with pytest.raises(ValueError, match="2 targets and 3"):
    fn(["a", "b"], ["a", "b", "c"] if fn is not metrics.mean_log_likelihood else [0.0] * 3)


@pytest.mark.parametrize("fn", PREDICT_METRICS + [metrics.mean_log_likelihood])
def test_no_examples_is_an_error(fn):
  with pytest.raises(ValueError, match="at least one example"):
    fn([], [])


@pytest.mark.parametrize("fn", PREDICT_METRICS + [metrics.mean_log_likelihood])
def test_seqio_routes_predictions_and_scores_to_the_right_metrics(fn):
  want = "SCORE" if fn is metrics.mean_log_likelihood else "PREDICTION"
  assert seqio.metrics.PassthroughLegacyMetric.from_metric_fn(fn).model_output_type.name == want
