"""tools/stylus_experiment's scoring: chrF over the translation and text prompts (sacrebleu's
corpus chrF), exact-match accuracy over the other instruction prompts (a chain of thought by
its final answer), and the claims' directions (fewer nats per token is better)."""

import pytest
import sacrebleu

from tools import adapter_catalog_tasks as cat
from tools import stylus_experiment as sx


def _prompt(task, target):
  return sx.Prompt("a", task, "prompt", (5,), target, (6, 1))


def test_task_scores_split_prompts_by_their_tasks_metric():
  prompts = [
      _prompt("flan_translation_zero_shot", "Datei öffnen"),
      _prompt(cat.text_task("de"), "Fenster schließen"),
      _prompt("flan_langid_zero_shot", "German"),
      _prompt("flan_country_code_few_shot", "DE"),
      _prompt("flan_arithmetic_cot", "3 + 4 = 7. So the answer is 7."),
  ]
  outputs = ["Datei offen", "Fenster", "German", "FR", "2 + 5 = 7. So the answer is 7."]
  scores = sx.task_scores(prompts, [{"output": o} for o in outputs])
  expected_chrf = sacrebleu.corpus_chrf(outputs[:2], [[p.target for p in prompts[:2]]]).score
  assert scores["chrf"] == pytest.approx(expected_chrf)
  assert scores["accuracy"] == pytest.approx(100 * 2 / 3)  # German right, FR wrong, CoT right
  assert sx.task_scores(prompts[2:3], [{"output": "French"}]) == {"chrf": None, "accuracy": 0.0}


def test_claims_read_fewer_nats_as_better_and_skip_missing_scores():
  methods = {
      m: {"nats_per_token": n, "chrf": c, "accuracy": None}
      for m, n, c in (
          ("base", 3.0, 20.0),
          ("random", 2.0, 30.0),
          ("retriever", 2.5, 10.0),
          ("stylus", 2.5, 25.0),
          ("stylus_mean", 1.0, 5.0),
      )
  }
  verdicts = {c["claim"]: c["reproduced"] for c in sx.claims(methods)}
  assert verdicts == {
      "stylus beats base on nats_per_token": True,
      "stylus beats base on chrf": True,
      "stylus beats random on nats_per_token": False,
      "stylus beats random on chrf": False,
      "stylus beats retriever on nats_per_token": False,  # a tie is no win
      "stylus beats retriever on chrf": True,
      "stylus_mean beats base on nats_per_token": True,
      "stylus_mean beats base on chrf": False,
      "stylus_mean beats random on nats_per_token": True,
      "stylus_mean beats random on chrf": False,
      "stylus_mean beats retriever on nats_per_token": True,
      "stylus_mean beats retriever on chrf": False,
  }


def test_stylus_mean_weighs_the_keywords_to_one_in_all():
  mask = {"a": ("x", "y"), "b": ("y",), "c": ()}
  assert sx.keyword_weights("stylus", mask) is None
  weights = sx.keyword_weights("stylus_mean", mask)
  assert weights == pytest.approx({"a": 0.5, "b": 0.5})  # "c" keeps no adapter
  assert sum(sx.masks.merge_weights(mask, weights).values()) == pytest.approx(1.0)
  assert sx.keyword_weights("stylus_mean", {"c": ()}) is None
