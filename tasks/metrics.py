"""SeqIO metric functions that tasks declare in `metric_fns`, computed by maintained libraries.

SeqIO picks what a metric needs from its positional parameter names: `fn(targets,
predictions)` gets the postprocessed target strings and decoded predictions, `fn(targets,
scores)` gets the target strings and one log-likelihood per example, all in dataset order.
Each returns `{name: value}`.

Convention: every text metric is a percentage on a 0-100 scale, as in T5's metrics and
sacrebleu (accuracy 66.67 for 2 of 3 right; WER 33.33 for 1 word error in 3, which may
exceed 100 when the prediction has many insertions). `mean_log_likelihood` is in nats.
Scores are corpus-level (BLEU, chrF, WER and CER pool their counts over all examples);
ROUGE is the mean of per-example F-measures.
"""

from typing import Sequence

import jiwer
import numpy as np
import sacrebleu
from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeLsum")


def _check_pairs(targets: Sequence, outputs: Sequence, outputs_name: str) -> None:
  if len(targets) != len(outputs):
    raise ValueError(
        f"metric needs as many {outputs_name} as targets; got {len(targets)} targets and "
        f"{len(outputs)} {outputs_name}"
    )
  if not len(targets):
    raise ValueError(f"metric needs at least one example; got 0 targets and 0 {outputs_name}")


def accuracy(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Exact string match (no normalisation), in percent; postprocessors normalise first."""
  _check_pairs(targets, predictions, "predictions")
  return {"accuracy": 100.0 * float(np.mean([t == p for t, p in zip(targets, predictions)]))}


def bleu(
    targets: Sequence[str], predictions: Sequence[str], *, tokenize: str = "13a"
) -> dict[str, float]:
  """sacrebleu corpus BLEU (one reference each); `tokenize="zh"`/`"ja-mecab"` etc. per language."""
  _check_pairs(targets, predictions, "predictions")
  return {
      "bleu": sacrebleu.corpus_bleu(list(predictions), [list(targets)], tokenize=tokenize).score
  }


def chrf(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """sacrebleu corpus chrF (character n-grams, beta 2): robust where word BLEU is sparse."""
  _check_pairs(targets, predictions, "predictions")
  return {"chrf": sacrebleu.corpus_chrf(list(predictions), [list(targets)]).score}


def chrf_plus_plus(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """sacrebleu corpus chrF++: chrF plus word uni- and bigrams."""
  _check_pairs(targets, predictions, "predictions")
  metric = sacrebleu.CHRF(word_order=2)
  return {"chrf++": metric.corpus_score(list(predictions), [list(targets)]).score}


def wer(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """jiwer corpus word error rate (edits over reference words), in percent."""
  _check_pairs(targets, predictions, "predictions")
  return {"wer": 100.0 * jiwer.wer(list(targets), list(predictions))}


def cer(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """jiwer corpus character error rate (edits over reference characters), in percent."""
  _check_pairs(targets, predictions, "predictions")
  return {"cer": 100.0 * jiwer.cer(list(targets), list(predictions))}


def rouge(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """rouge-score F-measures (Porter stemming; rougeLsum splits sentences at newlines), percent.

  The plain mean over examples, not rouge-score's bootstrap aggregate, so it is
  deterministic. Sentence splitting never calls nltk's punkt, which would need a download.
  """
  _check_pairs(targets, predictions, "predictions")
  scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
  scores = [scorer.score(t, p) for t, p in zip(targets, predictions)]
  return {k: 100.0 * float(np.mean([s[k].fmeasure for s in scores])) for k in ROUGE_TYPES}


def mean_log_likelihood(targets: Sequence[str], scores: Sequence[float]) -> dict[str, float]:
  """Mean per-example log-likelihood of the targets (nats), from the model's score_fn."""
  _check_pairs(targets, scores, "scores")
  return {"mean_log_likelihood": float(np.mean(scores))}
