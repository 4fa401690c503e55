"""tools/mt_experiment: the runs' mixtures (no pair of a zero-resource language anywhere, MASS for
exactly Z), the languages' checks, the dirty-data set and its filter report, the LangID
retraining bookkeeping, the table, verdict and plot; one real tiny run of every model through
the command line (slow)."""

import argparse
import json
import sys

import pytest
import seqio

from model_zoo.errors import ConfigError
from tasks.langid import filters
from tasks.mt import tasks as mt
from tasks.mt import zero_resource
from tools import mt_experiment as experiment

Z, S, L = ["ro", "ca"], ["de", "es", "fr"], "he"
EN = mt.PIVOT


def pair_tasks(lang: str) -> set[str]:
  return {mt.task_name(EN, lang), mt.task_name(lang, EN)}


def test_no_mixture_holds_a_pair_of_a_language_it_treats_as_zero_resource():
  runs = experiment.plan(Z, S, L)
  assert set(runs) == set(experiment.RUNS)
  supervised_pairs = set().union(*(pair_tasks(s) for s in S))
  for name, run in runs.items():
    tasks = experiment.mixture_tasks(run)
    held_out = set().union(*(pair_tasks(lang) for lang in [*Z, L]))
    assert not held_out & set(tasks), name
    translation = {t for t in tasks if t.startswith("mt_")}
    assert translation == supervised_pairs, name  # en<->S only, every one of them
    assert len(tasks) == len(set(tasks))


def test_mass_is_for_exactly_the_zero_resource_languages():
  runs = experiment.plan(Z, S, L)
  mass = {
      name: {t for t in experiment.mixture_tasks(r) if "mass_" in t} for name, r in runs.items()
  }
  assert mass[experiment.A] == set()
  assert mass[experiment.B] == mass[experiment.C] == {mt.mass_task_name(z) for z in Z}
  for name in experiment.DIRTY_RUNS:
    assert mass[name] == {experiment.lines_task_name(name, L)}
    assert runs[name]["stand_ins"] == {mt.mass_task_name(L): experiment.lines_task_name(name, L)}
    assert runs[name]["evaluated"] == [L, *S]
  synthetic = set(runs[experiment.C]["tasks"]) - set(runs[experiment.B]["tasks"])
  assert synthetic == {experiment.back_translation_task_name(z) for z in Z}
  assert set(runs[experiment.B]["tasks"]) - set(runs[experiment.A]["tasks"]) == mass[experiment.B]
  assert runs[experiment.B]["evaluated"] == [*Z, *S]


def test_the_spec_registers_the_planned_mixtures_at_the_temperature_rates(tmp_path, monkeypatch):
  monkeypatch.setenv("PYTHONPATH", "")
  runs = experiment.plan(Z, S, L)
  spec = {
      "lines_mass_tasks": [
          {"name": experiment.lines_task_name(r, L), "lang": L, "lines": {"train": ["a b", "c"]}}
          for r in experiment.DIRTY_RUNS
      ],
      "mixtures": [
          experiment.mixture_spec(r, runs, 2.0)
          for r in (experiment.A, experiment.B, *experiment.DIRTY_RUNS)
      ],
  }
  experiment.write_task_module(str(tmp_path), spec)
  module = (tmp_path / f"{experiment.TASK_MODULE}.py").read_text()
  assert "register_spec(" in module and str(tmp_path) in module
  assert str(tmp_path) in experiment.os.environ["PYTHONPATH"].split(experiment.os.pathsep)
  for name in [experiment.mixture_name(r) for r in runs] + [
      s["name"] for s in spec["lines_mass_tasks"]
  ]:
    seqio.MixtureRegistry.remove(name)
    seqio.TaskRegistry.remove(name)
  zero_resource.register_spec(tmp_path / f"{experiment.TASK_MODULE}.json")
  for name in (experiment.A, experiment.B, *experiment.DIRTY_RUNS):
    mixture = seqio.get_mixture_or_task(experiment.mixture_name(name))
    rates = {task.name: mixture.get_rate(task) for task in mixture.tasks}
    expected = mt.mixing_rates(2.0, runs[name]["tasks"])
    stand_ins = runs[name]["stand_ins"]
    assert rates == pytest.approx({stand_ins.get(t, t): r for t, r in expected.items()})


def test_default_supervised_languages_leave_out_english_z_and_l():
  # Z and L drawn from the corpus's first languages, which S would otherwise take.
  first = [lang for lang in experiment.corpus.LANGUAGES if lang != EN]
  zero, dirty = first[1:3], first[0]
  args = argparse.Namespace(
      zero_resource=zero, supervised=None, num_supervised=8, dirty_language=dirty
  )
  languages = experiment.resolve_languages(args)
  supervised = languages["supervised"]
  assert len(supervised) == 8 and not {EN, dirty, *zero} & set(supervised)
  assert supervised == first[3:11]


@pytest.mark.parametrize(
    "zero,supervised,dirty,match",
    [
        (["ro"], ["de", "ro"], "he", "cannot be supervised"),
        (["ro"], ["de", "he"], "he", "cannot be supervised"),
        (["ro", "ro"], ["de"], "he", "distinct"),
        (["ro"], ["en"], "he", "distinct"),
        (["ro"], ["de"], "en", "cannot be supervised"),
        ([], ["de"], "he", "needs zero-resource"),
        (["xx"], ["de"], "he", "xx"),
    ],
)
def test_language_mistakes_name_the_flag(zero, supervised, dirty, match):
  with pytest.raises(ConfigError, match=match):
    experiment.check_languages(zero, supervised, dirty)


class DropsEnglish(filters.LineFilter):
  name = "langid"

  def keep(self, lines, lang):
    return [line != "Open file" for line in lines]


def test_the_dirty_set_is_the_texts_then_the_untranslated_english_and_the_report_counts(
    monkeypatch,
):
  texts = ["Hallo Welt", "Guten Tag", "Hallo, Welt!"]  # the third: a duplicate
  english = ["Open file", "x"]  # LangID's and the length filter's
  monkeypatch.setattr(experiment.corpus, "monolingual", lambda lang, split: list(texts))
  monkeypatch.setattr(experiment.corpus, "untranslated", lambda lang, split: tuple(english))
  line_filters = [filters.LengthFilter(), DropsEnglish(), filters.DedupFilter()]
  report, summary = experiment.filter_dirty("de", "train", line_filters)
  assert report.lines == tuple(texts + english)
  assert report.kept == ["Hallo Welt", "Guten Tag"]
  assert summary["lines"] == 5 and summary["kept"] == 2
  assert summary["dropped"] == {"length": 1, "langid": 1, "dedup": 1}
  assert summary["texts"] == {"lines": 3, "dropped": 1}
  assert summary["untranslated"] == {
      "lines": 2,
      "kept": 0,
      "dropped": {"length": 1, "langid": 1, "dedup": 0},
      "caught": 2,
      "caught_share": 1.0,
  }


def test_langid_is_retrained_on_all_or_the_kept_lines_of_l(monkeypatch):
  report = filters.run_filters(["shalom", "Open file", "toda"], L, [DropsEnglish()])
  others = [("hallo", "de"), ("Open file", EN)]
  trained = {}

  class Model:

    def __init__(self, examples):
      self.labels = dict(examples)

    def predict(self, texts):
      return [self.labels.get(t, "de") for t in texts], None

  def train(config, examples):
    trained[len(trained)] = examples
    return Model(examples)

  monkeypatch.setattr(experiment.langid_data, "training_examples", lambda: others + [("x", L)])
  monkeypatch.setattr(
      experiment.langid_data,
      "held_out",
      lambda: {EN: ["Open file"], L: ["shalom"], "de": ["hallo"]},
  )
  monkeypatch.setattr(experiment.langid_train, "train", train)
  monkeypatch.setattr(experiment.langid_train, "load_or_train", lambda config: Model(others))
  scores = experiment.langid_accuracies(L, report)
  noisy, filtered = trained[0], trained[1]
  assert noisy == others + [("shalom", L), ("Open file", L), ("toda", L)]
  assert filtered == others + [("shalom", L), ("toda", L)]
  assert scores["noisy"][EN] == 0.0 and scores["filtered"][EN] == 100.0
  assert scores["noisy"]["lang_train_lines"] == 3 and scores["filtered"]["lang_train_lines"] == 2
  assert scores["corpus"][L] == 0.0 and scores["filtered"]["micro"] == 100.0


def scores_for(languages, chrf_into, chrf_out_of, supervised=20.0):
  def row(chrf):
    return {"chrf": chrf, "bleu": chrf / 10, "on_target": 50.0, "examples": 8, "outputs": []}

  scores = {}
  for lang in languages:
    into, out = (chrf_into, chrf_out_of) if lang in [*Z, L] else (supervised, supervised)
    scores[f"{EN}-{lang}"], scores[f"{lang}-{EN}"] = row(into), row(out)
  return scores


CHRF = {  # (into, out of) the run's zero-resource languages
    experiment.A: (5.0, 6.0),
    experiment.B: (9.0, 12.5),
    experiment.C: (14.25, 12.0),
    experiment.RAW: (3.0, 4.0),
    experiment.FILTERED: (2.0, 4.5),
}


def results(supervised: float = 20.0, chrf=None) -> dict:
  runs = experiment.plan(Z, S, L)
  chrf = {**CHRF, **(chrf or {})}
  for name, run in runs.items():
    run["scores"] = scores_for(run["evaluated"], *chrf[name], supervised=supervised)
    run["curve"] = {"step": [10], "train_seconds": [3.0], "eval_loss": [7.0]}
  caught = {"lines": 10, "kept": 1, "dropped": {"langid": 9}, "caught": 9, "caught_share": 0.9}
  split = {
      "lines": 30,
      "kept": 15,
      "dropped": {"langid": 12, "wordlist": 3},
      "texts": {"lines": 20, "dropped": 5},
  }
  langid = {
      name: {"lang_train_lines": n, "micro": micro, "macro": micro - 1, L: 99.0, EN: en}
      for name, n, micro, en in (
          ("corpus", None, 92.5, 87.0),
          ("noisy", 30, 91.0, 68.5),
          ("filtered", 15, 92.75, 88.25),
      )
  }
  settings = {
      "steps": 10,
      "batch_size": 8,
      "eval_examples": 8,
      "temperature": 5.0,
      "zero_resource": Z,
      "supervised": S,
      "dirty_language": L,
  }
  filtering = {"filters": ["langid", "wordlist"], "train": {**split, "untranslated": caught}}
  filtering["validation"] = {**split, "untranslated": {**caught, "caught_share": 0.8, "caught": 8}}
  return experiment.summarise(settings, runs, filtering, langid, {})


def test_summaries_and_verdict_follow_the_scores():
  r = results()
  b = r["runs"][experiment.B]["summary"]
  assert b == {
      "into_zero_resource_chrf": 9.0,
      "out_of_zero_resource_chrf": 12.5,
      "supervised_chrf": 20.0,
  }
  # Supervised chrF 20 is below USABLE_CHRF: the MT claims cannot be tested; LangID's can.
  assert [claim["outcome"] for claim in r["verdict"]] == ["inconclusive"] * 3 + ["reproduced"]
  assert "(b) 10.8 vs (a) 5.5" in r["verdict"][0]["evidence"]
  assert "filtered 3.2 vs raw 3.5" in r["verdict"][2]["evidence"]
  assert "supervised en<->S chrF 20.0 (a claim needs >= 25)" in r["verdict"][0]["evidence"]
  json.dumps(r)  # the results are JSON as they stand


@pytest.mark.parametrize(
    "chrf,outcomes",
    [
        # (b) - (a) = +5.25, (c) - (b) into Z = +5.25, filtered - raw = -0.25 (within 1 point)
        ({}, ["reproduced", "reproduced", "inconclusive"]),
        # (c) - (b) into Z = -1.0 and filtered - raw = -2.0: as large the other way
        (
            {experiment.C: (8.0, 12.0), experiment.FILTERED: (1.0, 2.0)},
            ["reproduced", "not reproduced", "not reproduced"],
        ),
        # (b) - (a) = +0.75: within a point
        ({experiment.B: (6.0, 6.5)}, ["inconclusive", "reproduced", "inconclusive"]),
    ],
)
def test_mt_claims_of_translating_models_need_a_gain_of_a_point(chrf, outcomes):
  r = results(supervised=30.0, chrf=chrf)
  assert [claim["outcome"] for claim in r["verdict"][:3]] == outcomes


def test_the_langid_claim_needs_half_a_point():
  assert experiment.outcome(0.49, experiment.MIN_ACCURACY_GAIN) == "inconclusive"
  assert experiment.outcome(0.5, experiment.MIN_ACCURACY_GAIN) == "reproduced"
  assert experiment.outcome(-0.6, experiment.MIN_ACCURACY_GAIN) == "not reproduced"
  assert experiment.outcome(9.0, 1.0, testable=False) == "inconclusive"


def test_table_numbers_are_the_jsons():
  r = results()
  table = experiment.format_table(r)
  runs = r["runs"]
  for name in experiment.RUNS:
    row = next(line for line in table.splitlines() if line.startswith(experiment.LABELS[name]))
    for x in runs[name]["zero_resource"]:
      for direction in (f"{EN}-{x}", f"{x}-{EN}"):
        s = runs[name]["scores"][direction]
        assert f" | {s['chrf']:.1f} / {s['bleu']:.1f} / {s['on_target']:.0f}%" in row
    assert row.endswith(f" | {runs[name]['summary']['supervised_chrf']:.1f}")
  header = next(line for line in table.splitlines() if line.startswith("model | en-ro"))
  assert header == "model | en-ro | ro-en | en-ca | ca-en | en<->S chrF"
  assert "(c) + back-translation | 14.2 / 1.4 / 50% | 12.0 / 1.2 / 50%" in table
  assert "English caught 9/10 (90.0%)" in table and "English caught 8/10 (80.0%)" in table
  assert "  noisy: 91.00 / 90.00 / 99.0 / 68.5" in table
  assert "[inconclusive] filtering L=he's" in table
  assert table.count("[inconclusive]") == 3 and table.count("[reproduced]") == 1


def test_plot_writes_a_png(tmp_path):
  png = tmp_path / "plot.png"
  experiment.plot(results(), str(png))
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.slow
def test_every_model_through_the_command_line(tmp_path):
  out = tmp_path / "out.json"
  rc = experiment.main(
      [
          "--zero_resource=br",  # few texts: back-translating them all is quick
          "--supervised=de",
          f"--dirty_language={L}",
          "--steps=2",
          "--batch_size=8",
          "--eval_examples=2",
          f"--out_dir={tmp_path / 'runs'}",
          f"--json_out={out}",
          f"--plot={tmp_path / 'plot.png'}",
      ]
  )
  assert rc == 0
  r = json.loads(out.read_text())
  assert set(r["runs"]) == set(experiment.RUNS)
  for name, run in r["runs"].items():
    zero = ["br"] if name in experiment.ZERO_RESOURCE_RUNS else [L]
    assert set(run["scores"]) == {f"{EN}-{x}" for x in [*zero, "de"]} | {
        f"{x}-{EN}" for x in [*zero, "de"]
    }
    assert all(s["examples"] == 2 and 0 <= s["chrf"] <= 100 for s in run["scores"].values())
    assert run["curve"]["step"] == [2]
  assert r["back_translation"]["br"]["texts"] == len(experiment.corpus.monolingual("br", "train"))
  train = r["filtering"]["train"]
  assert train["lines"] == train["texts"]["lines"] + train["untranslated"]["lines"]
  assert sum(train["dropped"].values()) + train["kept"] == train["lines"]
  assert set(r["langid"]) == {"corpus", "noisy", "filtered"}
  assert len(r["verdict"]) == 4 and (tmp_path / "plot.png").exists()
  assert experiment.TASK_MODULE not in sys.modules  # imported by the training runs only
