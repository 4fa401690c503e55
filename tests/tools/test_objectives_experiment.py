"""tools/objectives_experiment: the probes it builds from Flan prompts, its scoring bookkeeping
(rank classification, nats per token, chunked scoring), its table and plot; one real tiny
run of both objectives through the command line (slow)."""

import json

import jax
import numpy as np
import pytest

from flax.core import meta

from model_zoo import dense, models
from tasks.flan import corpus_tasks, prompts, templates
from tasks.pretraining import text, vocabulary
from tests.tiny import tiny_config
from tools import objectives_experiment as experiment

VOCAB = vocabulary.pretraining_vocabulary()


@pytest.mark.parametrize("kind", experiment.SHOTS)
def test_probes_hold_the_questions_options_and_the_right_answer(kind):
  probes = experiment.flan_probes(corpus_tasks.COUNTRY_CODE, kind, 10)
  assert len(probes) == 10
  for prompt, options, answer in probes:
    assert len(options) == len(set(options)) == prompts.NUM_OPTIONS
    assert 0 <= answer < len(options)
    question = prompt.split("\n\n")[-1]  # few-shot: the exemplars come first
    assert all(f"- {option}" in question.split("\n") for option in options)
    assert prompt.count("OPTIONS:") == (1 if kind == "zero_shot" else 1 + prompts.NUM_SHOTS)


def test_answer_options_reads_the_last_block():
  prompt = "Q1\nOPTIONS:\n- a\n- b\nA: a\n\nQ2\nOPTIONS:\n- c\n- d\n- e\nAnswer:"
  assert templates.answer_options(prompt) == ["c", "d", "e"]
  assert templates.answer_options(templates.options_block(["x", "y z"])) == ["x", "y z"]


def test_continuations_split_each_document_in_halves():
  pairs = experiment.continuations(5)
  for (first, second), doc in zip(pairs, text.documents("validation"), strict=False):
    tokens = VOCAB.encode(doc)
    assert first + second == tokens + [experiment.EOS]
    assert len(first) == len(tokens) // 2


def test_ul2_prompts_lead_with_the_s_mode_token():
  assert experiment.prompt_prefix(experiment.UL2) == [vocabulary.mode_id("S")]
  assert experiment.prompt_prefix(experiment.CAUSAL) == []


def test_probe_scores_pick_the_best_option_of_each_prompt(monkeypatch):
  probes = [("p1", ["a", "bb", "c", "d"], 1), ("p2", ["a", "b", "c", "d"], 0)]
  # Prompt 1's best option is "bb" (its answer); prompt 2's is "c", not its answer "a".
  scores = np.array([-4.0, -1.0, -3.0, -5.0, -2.0, -6.0, -0.5, -7.0])
  monkeypatch.setattr(experiment, "log_likelihoods", lambda model, params, pairs: scores)
  got = experiment.probe_scores(None, None, experiment.CAUSAL, probes)
  tokens = len(VOCAB.encode("bb")) + 1 + len(VOCAB.encode("a")) + 1
  assert got == {"accuracy": 0.5, "answer_nats_per_token": 3.0 / tokens, "prompts": 2}


def test_chunked_scores_equal_one_pair_at_a_time():
  model = models.DecoderOnlyModel(dense.DecoderOnlyLM(tiny_config()))
  rng = np.random.default_rng(0)
  pairs = [
      (rng.integers(3, 64, n).tolist(), rng.integers(3, 64, m).tolist())
      for n, m in rng.integers(1, 40, (19, 2))
  ]
  batch = model.scoring_batch([p for p, _ in pairs[:1]], [t for _, t in pairs[:1]], 1, 64)
  params = meta.unbox(model.init(jax.random.PRNGKey(0), batch))
  together = experiment.log_likelihoods(model, params, pairs)
  alone = [experiment.log_likelihoods(model, params, [pair])[0] for pair in pairs[:4]]
  assert together.shape == (19,) and np.all(together < 0)
  np.testing.assert_allclose(together[:4], alone, rtol=1e-5)


def results() -> dict:
  def model(continuation, accuracy):
    probes = {
        f"{task} {kind}": {
            "accuracy": accuracy,
            "answer_nats_per_token": 2 * accuracy,
            "prompts": 8,
        }
        for task in ("langid", "arithmetic")
        for kind in experiment.SHOTS
    }
    return {"continuation_nats_per_token": continuation, "probes": probes}

  return {
      "steps": 10,
      "batch_size": 8,
      "eval_documents": 4,
      "models": {experiment.CAUSAL: model(5.5, 0.25), experiment.UL2: model(5.25, 0.375)},
  }


def test_table_and_plot(tmp_path):
  r = results()
  table = experiment.format_table(r)
  assert "continuation nats/token | 5.5000 | 5.2500 | True" in table
  assert "arithmetic few_shot accuracy (8 prompts) | 0.250 | 0.375 | True" in table
  assert "langid zero_shot answer nats/token | 0.500 | 0.750 | False" in table
  png = tmp_path / "plot.png"
  experiment.plot(r, str(png))
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.slow
def test_both_objectives_through_the_command_line(tmp_path):
  out = tmp_path / "out.json"
  rc = experiment.main(
      [
          "--steps=2",
          "--eval_period=2",
          "--eval_steps=1",
          "--batch_size=8",
          "--eval_documents=3",
          "--eval_prompts=2",
          f"--out_dir={tmp_path / 'runs'}",
          f"--json_out={out}",
          f"--plot={tmp_path / 'plot.png'}",
      ]
  )
  assert rc == 0
  r = json.loads(out.read_text())
  assert set(r["models"]) == set(experiment.OBJECTIVES)
  for m in r["models"].values():
    assert m["step"] == [2] and 0 < m["continuation_nats_per_token"] < 20
    assert len(m["probes"]) == len(experiment.PROBE_TASKS) * len(experiment.SHOTS)
    assert all(p["prompts"] == 2 for p in m["probes"].values())
