"""tools/flan_experiment (+ its task module tools/flan_experiment_tasks): which runs train on
which families at which rates, rank classification, the claims from the metrics, the table
and the plot; one real tiny run of the command lines (slow)."""

import json
import re

import numpy as np
import pytest
import tensorflow as tf

from model_zoo.errors import UserError
from tasks.flan import instructions, templates
from tasks.parallel import vocabulary as parallel_vocabulary
from tools import flan_experiment as fe
from tools import flan_experiment_tasks as fx

ALL = list(fx.FAMILIES)


def family_of(task: str) -> str:
  (family,) = [f for f in ALL if task.startswith(f"flan_{f}_")]
  return family


def test_each_held_out_run_trains_on_every_other_family_and_none_of_its_own():
  runs = fx.plan(ALL, ["held_out"])
  assert list(runs) == [f"without_{f}" for f in ALL]
  for held_out in ALL:
    run = runs[f"without_{held_out}"]
    assert run.evaluated == (held_out,)
    trained = {family_of(task) for task in run.rates()}
    assert trained == set(ALL) - {held_out}


def test_uniform_mixing_gives_every_family_the_same_share():
  runs = fx.plan(ALL, ["mixing"])
  shares = {}
  for name in (fx.UNIFORM, fx.DEFAULT):
    shares[name] = dict.fromkeys(ALL, 0.0)
    for task, rate in runs[name].rates().items():
      shares[name][family_of(task)] += rate
  assert list(shares[fx.UNIFORM].values()) == pytest.approx([1.0] * len(ALL))
  assert shares[fx.DEFAULT]["country_code"] < shares[fx.DEFAULT]["translation"] / 5  # capped
  assert runs[fx.UNIFORM].evaluated == runs[fx.DEFAULT].evaluated == tuple(ALL)


def test_template_ablation_runs_and_the_shared_default_run():
  runs = fx.plan(ALL, ["templates", "mixing"])
  kinds = {name: {kind_of(task) for task in runs[name].rates()} for name in fx.TEMPLATE_RUNS}
  assert kinds == {
      "zero_shot_only": {"zero_shot"},
      "zero_and_few_shot": {"zero_shot", "few_shot"},
      "default": {"zero_shot", "few_shot", "cot"},
  }
  assert runs["zero_shot_only"].evaluated == ("arithmetic",)
  assert runs[fx.DEFAULT].evaluated == ("arithmetic", "translation", "langid", "country_code")
  assert set(runs) == {*fx.TEMPLATE_RUNS, fx.UNIFORM}  # `default` is trained once
  assert fx.base_families(fx.plan(["langid", "arithmetic"], ["templates"])) == ("arithmetic",)


def kind_of(task: str) -> str:
  return next(k for k in templates.KINDS if f"_{k}" in task)


def test_eval_tasks_rank_the_options_variants_and_decode_the_others():
  tasks = fx.eval_tasks("langid", base=True)
  assert [(t.name, t.flan_task, t.rank) for t in tasks] == [
      ("flanexp_base_flan_langid_zero_shot", "flan_langid_zero_shot", False),
      ("flanexp_base_rank_flan_langid_zero_shot_options", "flan_langid_zero_shot_options", True),
      ("flanexp_base_flan_langid_few_shot", "flan_langid_few_shot", False),
      ("flanexp_base_rank_flan_langid_few_shot_options", "flan_langid_few_shot_options", True),
  ]
  assert [t.name for t in fx.eval_tasks("translation", base=False)] == [
      "flanexp_flan_translation_zero_shot",
      "flanexp_flan_translation_few_shot",
  ]


def test_one_row_per_option_and_rank_accuracy():
  vocab = parallel_vocabulary.parallel_vocabulary()
  prompts = [
      "Q: a\n- x\n- y\n\nWhich?\n" + templates.options_block(["German", "French", "Dutch"]),
      "Which?\n" + templates.options_block(["Greek", "Czech"]) + "\nAnswer:",
  ]
  ds = tf.data.Dataset.from_tensor_slices(
      {
          "inputs": tf.constant([[5, 6], [7, 8]], tf.int32),
          "inputs_pretokenized": prompts,
          "targets_pretokenized": ["French", "Greek"],
      }
  )
  rows = list(fx.one_row_per_option(ds, vocab=vocab).as_numpy_iterator())
  assert [(r["idx"], r["targets_pretokenized"].decode(), r["is_correct"]) for r in rows] == [
      (0, "German", False),
      (0, "French", True),
      (0, "Dutch", False),
      (1, "Greek", True),
      (1, "Czech", False),
  ]
  assert rows[1]["inputs"].tolist() == [5, 6] and rows[4]["inputs"].tolist() == [7, 8]
  assert rows[1]["targets"].tolist() == vocab.encode("French") + [vocab.eos_id]
  targets = [fx.option_of("", example=r, is_target=True) for r in rows]
  # example 0: French scores highest (right); example 1: Czech beats Greek (wrong)
  assert fx.rank_accuracy(targets, [-3.0, -1.0, -2.0, -5.0, -4.0]) == {"rank_accuracy": 50.0}


def _metrics(families, value):
  """Every eval metric of `families`' Flan tasks at `value` (the likelihoods at -value)."""
  scores = {}
  for family in families:
    for task in fx.eval_tasks(family, base=False):
      metrics = {"rank_accuracy": value} if task.rank else {
          "accuracy": value, "chrf": value, "bleu": value, "mean_log_likelihood": -value
      }  # fmt: skip
      scores.setdefault(task.flan_task, {}).update(metrics)
  return scores


def _results():
  settings = {
      "pretrain_gin": fe.PRETRAIN_GIN,
      "pretrain_steps": 40,
      "finetune_steps": 20,
      "batch_size": 4,
      "eval_examples": 8,
      "families": ALL,
      "parts": list(fx.PARTS),
  }
  values = {  # each family's held-out model beats the base but translation's; templates help
      "base": 30.0,
      "without_translation": 20.0,
      "without_langid": 40.0,
      "without_country_code": 41.0,
      "without_arithmetic": 42.0,
      "zero_shot_only": 25.0,
      "zero_and_few_shot": 27.0,
      "default": 35.0,
      "uniform": 36.0,
  }
  models = {}
  for name, run in fx.plan(ALL, fx.PARTS).items():
    models[name] = {"metrics": _metrics(run.evaluated, values[name])}
  models["base"] = {"metrics": _metrics(ALL, values["base"])}
  langid = models["without_langid"]["metrics"]
  langid["flan_langid_few_shot"]["mean_log_likelihood"] = -50.0
  langid["flan_langid_zero_shot_options"]["rank_accuracy"] = 30.0  # a tie reproduces nothing
  return fe.summarise(settings, models)


def test_claims_compare_the_right_models_on_the_right_tasks():
  claims = _results()["claims"]
  held_out = [c for c in claims if c["part"] == "held_out"]
  assert [(c["family"], c["setting"], c["reproduced"]) for c in held_out] == [
      (f, s, f != "translation" and (f, s) != ("langid", "zero_shot"))
      for f in ALL
      for s in ("zero_shot", "few_shot")
  ]
  langid_few = held_out[3]
  assert langid_few["task"] == "flan_langid_few_shot_options"
  assert langid_few["metric"] == "rank_accuracy"
  assert langid_few["scores"] == {"base": 30.0, "without_langid": 40.0}
  assert langid_few["likelihood_task"] == "flan_langid_few_shot"
  assert langid_few["likelihoods"] == {"base": -30.0, "without_langid": -50.0}
  assert not langid_few["likelihood_higher"]
  assert held_out[0]["task"] == "flan_translation_zero_shot" and held_out[0]["metric"] == "chrf"
  ablation = [c for c in claims if c["part"] == "templates"]
  assert [(c["setting"], c["task"], c["metric"]) for c in ablation] == [
      ("zero_shot", "flan_arithmetic_zero_shot_options", "rank_accuracy"),
      ("few_shot", "flan_arithmetic_few_shot_options", "rank_accuracy"),
      ("cot", "flan_arithmetic_cot", "accuracy"),
  ]
  assert ablation[2]["scores"] == {
      "zero_shot_only": 25.0,
      "zero_and_few_shot": 27.0,
      "default": 35.0,
  }
  assert all(c["reproduced"] for c in ablation)
  mixing = [c for c in claims if c["part"] == "mixing"]
  assert len(mixing) == 8 and not any(c["reproduced"] for c in mixing)


def test_the_tables_numbers_are_the_jsons():
  results = json.loads(json.dumps(_results()))
  table = fe.format_table(results)
  rows = [line for line in table.splitlines() if line.startswith(fe.PARTS)]
  assert len(rows) == len(results["claims"]) == 8 + 3 + 8
  for row, c in zip(rows, results["claims"]):
    part, family_setting, scores, likelihoods, verdict = row.split(" | ")
    assert (part, family_setting) == (c["part"], f"{c['family']} {c['setting']}")
    assert scores.startswith(c["metric"] + ": ")
    shown = dict(re.findall(r"(\w+) (-?\d+\.\d\d)", scores))
    assert {n: float(v) for n, v in shown.items()} == pytest.approx(c["scores"], abs=0.005)
    shown = dict(re.findall(r"(\w+) (-?\d+\.\d\d)", likelihoods))
    assert {n: float(v) for n, v in shown.items()} == pytest.approx(c["likelihoods"], abs=0.005)
    assert verdict == f"{fe._yes(c['reproduced'])} ({fe._yes(c['likelihood_higher'])})"
  assert "held_out: without_<family> > base: reproduced in 5 of 8 by the score, 2 of 8" in table
  assert "templates: default > zero_shot_only: reproduced in 3 of 3" in table


def test_task_metrics_read_the_eval_row():
  row = {"step": 20, "loss": 3.0}
  for task in fx.eval_tasks("country_code", base=True):
    row[f"{task.name}/{'rank_accuracy' if task.rank else 'accuracy'}"] = float(len(task.name))
  got = fe.task_metrics(row, ["country_code"], base=True)
  assert got["flan_country_code_few_shot"] == {
      "accuracy": len("flanexp_base_flan_country_code_few_shot")
  }
  assert got["flan_country_code_few_shot_options"] == {
      "rank_accuracy": len("flanexp_base_rank_flan_country_code_few_shot_options")
  }
  with pytest.raises(UserError, match="has no metrics of 'flanexp_base_flan_langid_zero_shot'"):
    fe.task_metrics(row, ["langid"], base=True)


def test_plot_writes_a_png(tmp_path):
  png = tmp_path / "plot.png"
  fe.plot(_results(), str(png))
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--families", "langid"], "needs two or more"),
        (["--families", "langid", "langid"], "names a family twice"),
        (["--families", "langid", "translation", "--parts", "templates"], "needs arithmetic"),
        (["--pretrain_gin", "gin/mixtures/nope.gin"], "nope.gin does not exist"),
        (["--finetune_steps", "0"], "--finetune_steps=0 must be >= 1"),
    ],
)
def test_bad_flags_are_refused(flags, message, capsys):
  with pytest.raises(SystemExit):
    fe.main(flags)
  assert message in capsys.readouterr().err


@pytest.mark.slow
def test_a_tiny_experiment_through_the_command_lines(tmp_path):
  out = tmp_path / "out.json"
  flags = ["--families", "langid", "arithmetic", "--parts", "held_out", "--pretrain_steps=10"]
  flags += ["--finetune_steps=4", "--batch_size=8", "--eval_examples=4"]  # 8 test devices
  flags += [f"--out_dir={tmp_path / 'runs'}", f"--json_out={out}", f"--plot={tmp_path / 'p.png'}"]
  assert fe.main(flags) == 0
  results = json.loads(out.read_text())
  assert list(results["models"]) == ["base", "without_langid", "without_arithmetic"]
  assert results["models"]["without_langid"]["families"] == ["arithmetic"]
  assert set(results["models"]["without_langid"]["metrics"]) == {
      instructions.task_name(fx.FAMILIES["langid"], v) for v in fx.FAMILIES["langid"].variants()
  }
  assert len(results["models"]["base"]["metrics"]) == 4 + 5
  for c in results["claims"]:
    assert all(0 <= v <= 100 for v in c["scores"].values())
    assert all(np.isfinite(v) and v < 0 for v in c["likelihoods"].values())
  assert [(c["family"], c["setting"]) for c in results["claims"]] == [
      (f, s) for f in ("langid", "arithmetic") for s in ("zero_shot", "few_shot")
  ]
  assert (tmp_path / "p.png").stat().st_size > 10_000
