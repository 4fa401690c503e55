"""tools/lifelong_experiment: each method's phase bindings (growth, frozen experts, distillation
or plain fine-tuning), and forgetting and adaptation in its summary, table and plot."""

import argparse
import json

import pytest

from tools import lifelong_experiment as lx

ARGS = argparse.Namespace(
    languages=["en", "ru", "de"],
    steps=100,
    batch_size=8,
    eval_batches=2,
    initial_experts=2,
    new_experts=3,
    distillation_weight=0.5,
)


def test_experts_grow_by_phase_except_under_naive_fine_tuning():
  assert [lx.experts_in_phase(lx.LIFELONG, p, ARGS) for p in range(3)] == [2, 5, 8]
  assert [lx.experts_in_phase(lx.NAIVE, p, ARGS) for p in range(3)] == [2, 2, 2]


def test_phase_bindings():
  assert lx.phase_bindings(lx.NAIVE, 0, ARGS, None) == [
      "MIXTURE_OR_TASK_NAME = 'asr_lm_en'",
      "MoeConfig.num_experts = 2",
  ]
  lifelong = lx.phase_bindings(lx.LIFELONG, 2, ARGS, "/runs/p1")
  assert lifelong == [
      "MIXTURE_OR_TASK_NAME = 'asr_lm_de'",
      "MoeConfig.num_experts = 8",
      "INITIAL_CHECKPOINT_PATH = '/runs/p1'",
      "PREVIOUS_NUM_EXPERTS = 5",
      "DISTILLATION_WEIGHT = 0.5",
  ]
  assert lx.phase_bindings(lx.NEW_EXPERTS_ONLY, 1, ARGS, "/p0")[-1] == "DISTILLATION_WEIGHT = 0.0"
  naive = lx.phase_bindings(lx.NAIVE, 1, ARGS, "/p0")
  assert naive[1:] == ["MoeConfig.num_experts = 2", "INITIAL_CHECKPOINT_PATH = '/p0'"]
  assert lx.PHASE_GIN_FILE[lx.NAIVE] == "gin/runs/finetune.gin"


def _results():
  start = {"en": 3.0, "ru": 5.0, "de": 5.5}
  losses = {
      lx.LIFELONG: [start, {"en": 3.1, "ru": 3.5, "de": 5.0}, {"en": 3.2, "ru": 3.6, "de": 3.9}],
      lx.NAIVE: [start, {"en": 3.6, "ru": 3.3, "de": 5.0}, {"en": 4.1, "ru": 3.9, "de": 3.7}],
  }
  return lx.summarise(vars(ARGS), losses)


def test_forgetting_is_the_first_languages_rise_and_adaptation_the_newest_loss():
  methods = _results()["methods"]
  assert methods[lx.LIFELONG]["forgetting"] == pytest.approx(0.2)
  assert methods[lx.NAIVE]["forgetting"] == pytest.approx(1.1)
  assert methods[lx.LIFELONG]["newest_language"] == pytest.approx(3.9)
  assert methods[lx.LIFELONG]["experts"] == 8 and methods[lx.NAIVE]["experts"] == 2


def test_table_and_plot(tmp_path):
  results = _results()
  table = lx.format_table(results)
  assert "Lifelong-MoE | 8 | 3.2000 | 3.6000 | 3.9000 | +0.2000" in table
  assert "naive fine-tuning | 2 | 4.1000 | 3.9000 | 3.7000 | +1.1000" in table
  png = tmp_path / "plot.png"
  lx.plot(results, str(png))
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.slow
def test_two_phases_through_the_command_line(tmp_path):
  out = tmp_path / "out.json"
  flags = ["--languages", "en", "ru", "--steps=4", "--eval_batches=1", "--batch_size=8"]
  flags += [f"--out_dir={tmp_path / 'runs'}", f"--json_out={out}", f"--plot={tmp_path / 'p.png'}"]
  assert lx.main(flags) == 0
  results = json.loads(out.read_text())
  for method in lx.METHODS:
    phases = results["methods"][method]["eval_cross_entropy"]
    assert len(phases) == 2 and all(3.0 < phases[-1][lang] < 9.0 for lang in ("en", "ru"))
  assert results["methods"][lx.LIFELONG]["experts"] == 4
