"""Experiment: MT for languages with monolingual data only (Bapna et al. 2022, "Building MT
Systems for the Next Thousand Languages"): MASS and back-translation for zero-resource
languages, and LangID + wordlist filtering of a language's dirty text.

  python -m tools.mt_experiment [--zero_resource ro ca] [--supervised de es ...] \
      [--num_supervised 8] [--dirty_language he] [--steps 400] [--batch_size 16] \
      [--eval_examples 64] [--temperature 5] [--out_dir DIR] [--json_out FILE] [--plot FILE]

Languages (all from the parallel catalog corpus, tasks/parallel/corpus.py): Z, the
zero-resource ones (--zero_resource; ro and ca have Romance relatives among S), whose
translations no model ever trains on; S, the supervised ones (--supervised, default the
first --num_supervised corpus languages that are neither English, Z nor L); L
(--dirty_language), the dirty-data case: by default Hebrew, whose catalogs leave the most
English untranslated in the train split (DIRTY_LANGUAGE).

Models: one multilingual encoder-decoder each (gin/models/encoder_decoder_tiny.gin, the 8192
pieces of gin/mixtures/mt.gin), trained from scratch by the real command line
(tools/moe_experiment.py's `train`: `python -m trainers.train` with gin/runs/pretrain.gin and
gin/runs/short_run.gin) for --steps steps of --batch_size packed rows, on a temperature
(--temperature) mixture registered by tasks/mt/zero_resource.py from a spec this tool
writes to --out_dir (a task module, MIXTURE_OR_TASK_MODULE, as a user's would be):
  (a) supervised: en<->S translation (mt_en_<s>, mt_<s>_en);
  (b) (a) + MASS on each Z language's monolingual text (mass_<z>);
  (c) (b) + back-translation: (b)'s checkpoint, restored in this process, translates every
      Z train text into English once (greedy; trainers.predict_fns.text_predict_fn); the
      synthetic (English, z) pairs train en->z (tasks.mt.tasks.register_back_translation_task,
      its predict_fn a lookup in that table). Trained afresh for the same steps as (b),
      not continued from it: at equal compute the (b) -> (c) difference is the synthetic
      data alone, where a continued run would mix it with (b)'s extra steps;
  raw / filtered: (a) + MASS on L's text: L's train texts plus the English lines its
      catalogs left untranslated (raw), or what tasks.langid.filters.default_filters
      (length, repetition, LangID, wordlist, dedup; tools/filter_corpus.py's pipeline)
      kept of them (filtered). Both sampled at the rate of the corpus's mass_<L>, so the
      two differ only in the lines MASS reads.
No mixture holds a translation task of a Z language (or of L in raw/filtered), nor any
non-English pair; the validation messages are held out of every task (the corpus splits
by message), so scores are on messages no model saw in any language.

Scores: each model, restored in this process (trainers.restore.restore_params), translates the
first --eval_examples validation pairs of each direction en->x and x->en greedily
(x: Z and S for (a)-(c), L and S for raw/filtered), scored by corpus chrF and BLEU
(tasks.metrics, sacrebleu) and by the share of outputs that podzoo's LangID labels as the
wanted language (on-target). The training run's eval loss at its end (EVAL_BATCHES batches of
the en<->S validation pairs, alike for every model) and its training seconds are kept. The dirty-data part also reports what the
filters removed (per filter; the untranslated English caught in the train split, whose
English LangID trained on, and in the validation split, which it never saw) and podzoo's
LangID (tasks/langid) retrained with L's lines raw or filtered (~45 s each over the 93
languages), its accuracy on the held-out set of tasks.langid.data.held_out.

Writes a JSON of every run's settings, mixture, curve and scores, a PNG (chrF per direction
of (a)/(b)/(c) into and out of Z; raw vs filtered into and out of L), and prints a table
and a verdict on each claim: MASS on monolingual text helps zero-resource languages,
back-translation helps further, and filtering the dirty text matters.

Cost (measured on this 2-core CPU, beside a test suite on the same cores): the defaults (five
models of 400 steps) took 51 minutes, 20 of them training steps (0.5-0.7 s per step of
batch 16 x 64+64 packed tokens) and 4 back-translating the Z texts (4,583 ro and 4,994 ca
in 100 and 134 s); the rest started the runs (imports, the mixtures' first shuffle buffers,
compiling), scored 20 directions per model and retrained LangID twice.
"""

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from typing import Any, Callable, Optional, Sequence

import gin
import jax
import numpy as np

from model_zoo.errors import ConfigError
from tasks import metrics
from tasks.langid import data as langid_data
from tasks.langid import filters, model as langid_model
from tasks.langid import train as langid_train
from tasks.mt import features
from tasks.mt import tasks as mt_tasks
from tasks.parallel import corpus
from tasks.parallel import vocabulary as parallel_vocabulary
from tools import benchmark_common, filter_corpus, langid_compare, moe_experiment
from trainers import predict_fns, restore
from trainers import train  # noqa: F401  (registers train(), which the run configs restored bind)

MODEL_GIN = "gin/models/encoder_decoder_tiny.gin"
MT_GIN = "gin/mixtures/mt.gin"
GIN_FILES = (MODEL_GIN, "gin/runs/pretrain.gin", "gin/runs/short_run.gin", MT_GIN)
PIVOT = mt_tasks.PIVOT
MAX_LENGTH = 64  # gin/mixtures/mt.gin's TASK_FEATURE_LENGTHS (prompt and output each)
DECODE_ROWS = 64  # texts per compiled decode call
EXAMPLES_KEPT = 3  # outputs kept in the JSON per direction
# A training run's eval at its end: the trainer rebuilds the validation pipeline of the 16
# en<->S tasks for it (~60 s on a busy 2-core CPU), so once, on a few batches.
EVAL_BATCHES = 2
# The corpus language whose catalogs leave the most English untranslated in the train split:
# Hebrew, 2,863 lines beside its 2,046 texts (then id 1,119, it 881; Debian, 2026-12-04).
# Fixed, not computed: `corpus.untranslated` reads every catalog per language (~9 s each).
DIRTY_LANGUAGE = "he"
A, B, C, RAW, FILTERED = RUNS = ("a_supervised", "b_mass", "c_back_translation", "raw", "filtered")
LABELS = {
    A: "(a) supervised",
    B: "(b) + MASS on Z",
    C: "(c) + back-translation",
    RAW: "raw L + MASS",
    FILTERED: "filtered L + MASS",
}
ZERO_RESOURCE_RUNS, DIRTY_RUNS = (A, B, C), (RAW, FILTERED)
PREFIX = "mtexp_"
TASK_MODULE = "mt_experiment_tasks"  # written to --out_dir, imported by the training runs
_configured_model = benchmark_common.model_configurable("mt_experiment")


# --- languages and mixtures --------------------------------------------------------------------
def resolve_languages(args: argparse.Namespace) -> dict[str, Any]:
  """Z, S and L from the flags (S's default in the module docstring), checked."""
  zero_resource, dirty = list(args.zero_resource), args.dirty_language
  supervised = args.supervised
  if supervised is None:
    taken = {PIVOT, dirty, *zero_resource}
    supervised = [lang for lang in corpus.LANGUAGES if lang not in taken][: args.num_supervised]
  check_languages(zero_resource, supervised, dirty)
  return {"zero_resource": zero_resource, "supervised": list(supervised), "dirty_language": dirty}


def check_languages(zero_resource: Sequence[str], supervised: Sequence[str], dirty: str) -> None:
  for lang in (*zero_resource, *supervised, dirty):
    corpus.check_language(lang)
  if not zero_resource or not supervised:
    raise ConfigError(
        f"the experiment needs zero-resource and supervised languages; got --zero_resource "
        f"{list(zero_resource)} and --supervised {list(supervised)}"
    )
  for flag, langs in (("--zero_resource", zero_resource), ("--supervised", supervised)):
    if PIVOT in langs or len(set(langs)) != len(langs):
      raise ConfigError(f"{flag} {list(langs)} must list distinct languages other than {PIVOT!r}")
  clash = sorted(set(supervised) & {*zero_resource, dirty})
  if clash or dirty == PIVOT:
    raise ConfigError(
        f"{clash or [PIVOT]} cannot be supervised (--supervised) and zero-resource "
        "(--zero_resource, --dirty_language) at once; drop them from one of the flags"
    )


def mixture_name(run: str) -> str:
  return f"{PREFIX}{run}"


def lines_task_name(run: str, lang: str) -> str:
  return f"{PREFIX}{mt_tasks.mass_task_name(lang)}_{run}"


def back_translation_task_name(lang: str) -> str:
  return f"{PREFIX}bt_{mt_tasks.task_name(PIVOT, lang)}"


def plan(zero_resource: Sequence[str], supervised: Sequence[str], dirty: str) -> dict[str, dict]:
  """Run -> {"tasks": its mixture's tasks (rates by tasks.mt.tasks.mixing_rates), "stand_ins":
  {task: the experiment's task sampled at its rate instead}, "zero_resource": the languages
  it treats as such, "evaluated": the languages x of its scored directions en<->x}."""
  pairs = [
      name
      for s in supervised
      for name in (mt_tasks.task_name(PIVOT, s), mt_tasks.task_name(s, PIVOT))
  ]
  mass = [mt_tasks.mass_task_name(z) for z in zero_resource]
  synthetic = [back_translation_task_name(z) for z in zero_resource]
  runs = {
      run: {"tasks": tasks, "stand_ins": {}, "zero_resource": list(zero_resource)}
      for run, tasks in ((A, pairs), (B, pairs + mass), (C, pairs + mass + synthetic))
  }
  for run in DIRTY_RUNS:
    dirty_mass = mt_tasks.mass_task_name(dirty)
    runs[run] = {
        "tasks": pairs + [dirty_mass],
        "stand_ins": {dirty_mass: lines_task_name(run, dirty)},
        "zero_resource": [dirty],
    }
  for run in runs.values():
    run["evaluated"] = [*run["zero_resource"], *supervised]
  return runs


def mixture_tasks(run: dict) -> list[str]:
  """The tasks a run's mixture samples, stand-ins in place."""
  return [run["stand_ins"].get(task, task) for task in run["tasks"]]


def write_task_module(out_dir: str, spec: dict) -> None:
  """The spec (tasks.mt.zero_resource.register_spec's JSON) and the task module that
  registers it, on PYTHONPATH for the training runs."""
  spec_path = os.path.join(out_dir, f"{TASK_MODULE}.json")
  with open(spec_path, "w", encoding="utf-8") as f:
    json.dump(spec, f, ensure_ascii=False)
  lines = [
      '"""Tasks and mixtures of tools/mt_experiment.py (written by it)."""',
      "from tasks.mt.zero_resource import register_spec",
      "",
      f"register_spec({spec_path!r})",
  ]
  with open(os.path.join(out_dir, f"{TASK_MODULE}.py"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
  if out_dir not in paths:
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [out_dir, *paths]))


def mixture_spec(run: str, runs: dict[str, dict], temperature: float) -> dict:
  return {
      "name": mixture_name(run),
      "temperature": temperature,
      "tasks": runs[run]["tasks"],
      "stand_ins": runs[run]["stand_ins"],
  }


# --- the dirty data ----------------------------------------------------------------------------
def dirty_lines(lang: str, split: str) -> tuple[list[str], list[str]]:
  """(`lang`'s corpus texts of `split`, the English its catalogs left untranslated there)."""
  return corpus.monolingual(lang, split), list(corpus.untranslated(lang, split))


def filter_dirty(
    lang: str, split: str, line_filters: Sequence[filters.LineFilter]
) -> tuple[filters.FilterReport, dict]:
  """The filters' run over `lang`'s dirty lines of `split` (its texts, then the untranslated
  English) and what they removed: per filter, and of the texts and of the English apart."""
  texts, english = dirty_lines(lang, split)
  report = filters.run_filters(texts + english, lang, line_filters)
  caught = filter_corpus.untranslated_drops(report, first=len(texts))
  caught["caught"] = caught["lines"] - caught["kept"]
  caught["caught_share"] = caught["caught"] / max(caught["lines"], 1)
  texts_kept = report.reasons[: len(texts)].count(None)
  summary = {
      **report.summary(EXAMPLES_KEPT),
      "texts": {"lines": len(texts), "dropped": len(texts) - texts_kept},
      "untranslated": caught,
  }
  return report, summary


def langid_accuracies(lang: str, report: filters.FilterReport) -> dict[str, dict]:
  """Held-out accuracy (%) of podzoo's LangID as shipped ("corpus"), and retrained with `lang`'s
  examples replaced by the filter run's lines, all of them ("noisy") or those kept
  ("filtered"): micro and macro over languages, and on `lang` and on English."""
  config = langid_model.LangIdConfig()
  held_out = langid_data.held_out()
  texts = [text for texts in held_out.values() for text in texts]
  gold = [code for code, texts in held_out.items() for _ in texts]
  others = [(text, code) for text, code in langid_data.training_examples() if code != lang]
  models = {
      "corpus": langid_train.load_or_train(config),
      "noisy": langid_train.train(config, others + [(line, lang) for line in report.lines]),
      "filtered": langid_train.train(config, others + [(line, lang) for line in report.kept]),
  }
  lines = {"corpus": None, "noisy": len(report.lines), "filtered": len(report.kept)}
  results = {}
  for name, langid in models.items():
    predicted = langid.predict(texts)[0]
    accuracy = langid_compare.accuracies(gold, [p == g for p, g in zip(predicted, gold)])
    results[name] = {
        "lang_train_lines": lines[name],
        **{key: accuracy[key] for key in ("micro", "macro", lang, PIVOT)},
    }
  return results


# --- translating with a trained model ----------------------------------------------------------
def restored(model_dir: str, steps: int):
  """(model, parameters) of MODEL_DIR's newest checkpoint, in float32 as it trained (its run
  config parsed, as trainers.eval's is: restoring builds the run's Trainer). The parameters
  are put on one device: text_predict_fn decodes unsharded, and parameters replicated over
  a mesh would have every device decode the same rows."""
  gin.clear_config()
  model = benchmark_common.load_model(
      GIN_FILES,
      moe_experiment.REPO_ROOT,
      [f"MODEL_DIR = '{model_dir}'", f"TRAIN_STEPS = {steps}"],
      _configured_model,
      "mt_experiment",
  )
  _, params = restore.restore_params(model, model_dir)
  gin.clear_config()
  return model, jax.device_put(params, jax.devices()[0])


def translators(model, params) -> Callable[[str], Callable[[Sequence[str]], list[str]]]:
  """into(lang) -> a predict_fn translating texts into `lang` (greedy), prompted as the MT
  tasks' inputs are; one compiled decoder per language."""
  vocabulary = parallel_vocabulary.parallel_vocabulary()

  @functools.cache
  def into(lang: str):
    return predict_fns.text_predict_fn(
        model,
        params,
        vocabulary,
        prompt_prefix=features.prompt_prefix(vocabulary, lang),
        prompt_eos=features.INPUTS_ADD_EOS,
        max_length=MAX_LENGTH,
        batch_size=DECODE_ROWS,
    )

  return into


@functools.cache
def _langid() -> langid_model.LangIdModel:
  return langid_train.load_or_train()


def on_target(outputs: Sequence[str], lang: str) -> float:
  """% of `outputs` that podzoo's LangID labels `lang`."""
  return 100.0 * float(np.mean([p == lang for p in _langid().predict(list(outputs))[0]]))


def score_direction(into, source: str, target: str, num_examples: int) -> dict[str, Any]:
  """chrF, BLEU and on-target % of the first validation pairs source -> target."""
  pairs = corpus.pairs(source, target, "validation")[:num_examples]
  outputs = into(target)([s for s, _ in pairs])
  references = [t for _, t in pairs]
  return {
      **metrics.chrf(references, outputs),
      **metrics.bleu(references, outputs),
      "on_target": on_target(outputs, target),
      "examples": len(pairs),
      "outputs": [
          {"source": s, "reference": t, "output": o}
          for (s, t), o in list(zip(pairs, outputs))[:EXAMPLES_KEPT]
      ],
  }


def direction(source: str, target: str) -> str:
  return f"{source}-{target}"


def score(into, languages: Sequence[str], num_examples: int) -> dict[str, dict]:
  """Every direction en->x and x->en of `languages`, keyed "en-x" / "x-en"."""
  return {
      direction(s, t): score_direction(into, s, t, num_examples)
      for lang in languages
      for s, t in ((PIVOT, lang), (lang, PIVOT))
  }


def back_translations(into, languages: Sequence[str]) -> tuple[dict, dict]:
  """({lang: {train text: its English}}, what it cost and how it reads): every train text of
  each language translated into English by `into`."""
  tables, info = {}, {}
  for lang in languages:
    start = time.perf_counter()
    texts = corpus.monolingual(lang, "train")
    english = into(PIVOT)(texts)
    tables[lang] = dict(zip(texts, english))
    info[lang] = {
        "texts": len(texts),
        "seconds": time.perf_counter() - start,
        "empty": sum(not e for e in english),
        "on_target": on_target(english, PIVOT),
        "outputs": [
            {"source": t, "output": e} for t, e in list(zip(texts, english))[:EXAMPLES_KEPT]
        ],
    }
  return tables, info


# --- the experiment ----------------------------------------------------------------------------
def train_run(run: str, args: argparse.Namespace, out_dir: str) -> str:
  """Trains `run`'s model through the command line; its MODEL_DIR. The eval loss at the end is
  on EVAL_BATCHES batches of (a)'s mixture, the en<->S validation pairs, alike for every run."""
  model_dir = os.path.join(out_dir, run)
  bindings = [
      f"MIXTURE_OR_TASK_MODULE = '{TASK_MODULE}'",
      f"MIXTURE_OR_TASK_NAME = '{mixture_name(run)}'",
      f"validation/DatasetConfig.mixture_or_task_name = '{mixture_name(A)}'",
  ]
  run_args = argparse.Namespace(
      steps=args.steps, batch_size=args.batch_size, eval_period=args.steps, eval_steps=EVAL_BATCHES
  )
  moe_experiment.train(LABELS[run], GIN_FILES, bindings, run_args, model_dir)
  return model_dir


def run(args: argparse.Namespace) -> dict[str, Any]:
  languages = resolve_languages(args)
  zero_resource, supervised = languages["zero_resource"], languages["supervised"]
  dirty = languages["dirty_language"]
  out_dir = os.path.abspath(args.out_dir or tempfile.mkdtemp(prefix="mt_experiment_"))
  os.makedirs(out_dir, exist_ok=True)

  if not corpus.untranslated(dirty, "train"):
    raise ConfigError(
        f"--dirty_language {dirty}: its catalogs leave no English untranslated in the train "
        f"split, so raw and filtered text would not differ; pick one that does, e.g. "
        f"{DIRTY_LANGUAGE}"
    )
  line_filters = filters.default_filters(_langid())
  train_report, filtering = filter_dirty(dirty, "train", line_filters)
  filtering = {"train": filtering, "validation": filter_dirty(dirty, "validation", line_filters)[1]}
  langid = langid_accuracies(dirty, train_report)

  runs = plan(zero_resource, supervised, dirty)
  dirty_train = {RAW: train_report.lines, FILTERED: train_report.kept}
  spec = {
      "lines_mass_tasks": [
          {"name": lines_task_name(r, dirty), "lang": dirty, "lines": {"train": dirty_train[r]}}
          for r in DIRTY_RUNS
      ],
      "back_translation_tasks": [],
      "mixtures": [mixture_spec(r, runs, args.temperature) for r in (A, B, *DIRTY_RUNS)],
  }
  write_task_module(out_dir, spec)

  def train_and_score(name: str):
    model_dir = train_run(name, args, out_dir)
    into = translators(*restored(model_dir, args.steps))
    runs[name]["scores"] = score(into, runs[name]["evaluated"], args.eval_examples)
    runs[name]["curve"] = moe_experiment.curves(model_dir)
    return into

  train_and_score(A)
  tables, bt_info = back_translations(train_and_score(B), zero_resource)
  spec["back_translation_tasks"] = [
      {"name": back_translation_task_name(z), "source": PIVOT, "target": z, "table": table}
      for z, table in tables.items()
  ]
  spec["mixtures"].append(mixture_spec(C, runs, args.temperature))
  write_task_module(out_dir, spec)
  for name in (C, *DIRTY_RUNS):
    train_and_score(name)
  settings = {k: vars(args)[k] for k in ("steps", "batch_size", "eval_examples", "temperature")}
  return summarise(
      {**settings, **languages, "gin_files": list(GIN_FILES)},
      runs,
      {"filters": [f.name for f in line_filters], **filtering},
      langid,
      bt_info,
  )


def mean_chrf(scores: dict[str, dict], directions: Sequence[str]) -> float:
  return float(np.mean([scores[d]["chrf"] for d in directions]))


def summarise(
    settings: dict, runs: dict[str, dict], filtering: dict, langid: dict, bt_info: dict
) -> dict[str, Any]:
  """The results: each run's mean chrF into and out of its zero-resource languages and over
  the supervised directions beside its scores, and the verdict on each claim."""
  for r in runs.values():
    zero = r["zero_resource"]
    r["summary"] = {
        "into_zero_resource_chrf": mean_chrf(r["scores"], [direction(PIVOT, z) for z in zero]),
        "out_of_zero_resource_chrf": mean_chrf(r["scores"], [direction(z, PIVOT) for z in zero]),
        "supervised_chrf": mean_chrf(
            r["scores"],
            [direction(*p) for s in settings["supervised"] for p in ((PIVOT, s), (s, PIVOT))],
        ),
    }
  results = {
      **settings,
      "runs": runs,
      "filtering": filtering,
      "langid": langid,
      "back_translation": bt_info,
  }
  results["verdict"] = verdict(results)
  return results


def _both_ways(summary: dict) -> float:
  return (summary["into_zero_resource_chrf"] + summary["out_of_zero_resource_chrf"]) / 2


# What decides a claim. A model that cannot translate its supervised pairs cannot show transfer
# to languages without pairs, and chrF on 64 pairs per direction moves by about a point between
# runs that differ only in their data order.
USABLE_CHRF = 25.0  # the baseline's supervised en<->S chrF below which an MT claim is untestable
MIN_CHRF_GAIN = 1.0  # chrF points
MIN_ACCURACY_GAIN = 0.5  # LangID points: ~2 standard errors of a difference on ~28k sentences
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


def outcome(gain: float, margin: float, testable: bool = True) -> str:
  """REPRODUCED when `gain` reaches `margin`, NOT_REPRODUCED when it is as large the other way,
  else (or when the runs cannot test the claim) INCONCLUSIVE."""
  if not testable or abs(gain) < margin:
    return INCONCLUSIVE
  return REPRODUCED if gain > 0 else NOT_REPRODUCED


def verdict(r: dict) -> list[dict[str, Any]]:
  """Each claim, its outcome in these runs (module constants above), and the numbers."""
  s = {name: run["summary"] for name, run in r["runs"].items()}
  into = "into_zero_resource_chrf"
  langid = r["langid"]
  lang = r["dirty_language"]
  caught = r["filtering"]["validation"]["untranslated"]["caught_share"]
  supervised = {name: s[name]["supervised_chrf"] for name in (A, RAW)}
  testable = {name: chrf >= USABLE_CHRF for name, chrf in supervised.items()}
  floor = f"; the baseline's supervised en<->S chrF {{:.1f}} (a claim needs >= {USABLE_CHRF:.0f})"
  return [
      {
          "claim": "MASS on Z's monolingual text improves translation into and out of Z "
          "(no Z pair trained)",
          "outcome": outcome(_both_ways(s[B]) - _both_ways(s[A]), MIN_CHRF_GAIN, testable[A]),
          "evidence": f"mean chrF en<->Z: (b) {_both_ways(s[B]):.1f} vs (a) {_both_ways(s[A]):.1f}"
          + floor.format(supervised[A]),
      },
      {
          "claim": "back-translation of Z's text by the model improves en->Z further",
          "outcome": outcome(s[C][into] - s[B][into], MIN_CHRF_GAIN, testable[A]),
          "evidence": f"chrF en->Z: (c) {s[C][into]:.1f} vs (b) {s[B][into]:.1f}"
          + floor.format(supervised[A]),
      },
      {
          "claim": f"filtering L={lang}'s dirty text (LangID + wordlist) improves L's MT",
          "outcome": outcome(
              _both_ways(s[FILTERED]) - _both_ways(s[RAW]), MIN_CHRF_GAIN, testable[RAW]
          ),
          "evidence": f"mean chrF en<->{lang}: filtered {_both_ways(s[FILTERED]):.1f} vs raw "
          f"{_both_ways(s[RAW]):.1f}; filters caught {100 * caught:.1f}% of unseen "
          "untranslated English" + floor.format(supervised[RAW]),
      },
      {
          "claim": f"LangID trained on filtered {lang} data beats LangID trained on it raw",
          "outcome": outcome(
              langid["filtered"]["micro"] - langid["noisy"]["micro"], MIN_ACCURACY_GAIN
          ),
          "evidence": f"held-out accuracy: filtered {langid['filtered']['micro']:.2f}% vs noisy "
          f"{langid['noisy']['micro']:.2f}% (en: {langid['filtered'][PIVOT]:.1f}% vs "
          f"{langid['noisy'][PIVOT]:.1f}%)",
      },
  ]


# --- output ------------------------------------------------------------------------------------
def _cell(scores: dict) -> str:
  return f"{scores['chrf']:.1f} / {scores['bleu']:.1f} / {scores['on_target']:.0f}%"


def format_table(r: dict[str, Any]) -> str:
  zero, lang = r["zero_resource"], r["dirty_language"]
  lines = [
      f"{r['steps']} steps of batch {r['batch_size']} per model; each direction's first "
      f"{r['eval_examples']} validation pairs, greedy: chrF / BLEU / on-target %",
      f"Z = {' '.join(zero)} (no pairs), S = {' '.join(r['supervised'])}, L = {lang} (dirty)",
  ]
  groups = ((ZERO_RESOURCE_RUNS, zero), (DIRTY_RUNS, [lang]))
  for names, langs in groups:
    directions = [direction(*p) for x in langs for p in ((PIVOT, x), (x, PIVOT))]
    lines.append(" | ".join(["model", *directions, "en<->S chrF"]))
    for name in names:
      run = r["runs"][name]
      cells = [_cell(run["scores"][d]) for d in directions]
      lines.append(" | ".join([LABELS[name], *cells, f"{run['summary']['supervised_chrf']:.1f}"]))
  for split in ("train", "validation"):
    f = r["filtering"][split]
    u = f["untranslated"]
    dropped = ", ".join(f"{name} {n}" for name, n in f["dropped"].items())
    lines.append(
        f"filters on {lang} {split}: {f['lines']} lines ({f['texts']['lines']} texts + "
        f"{u['lines']} untranslated English); dropped {dropped}; kept {f['kept']}; English "
        f"caught {u['caught']}/{u['lines']} ({100 * u['caught_share']:.1f}%); texts dropped "
        f"{f['texts']['dropped']}"
    )
  lines.append(f"LangID held-out accuracy % (micro / macro / {lang} / en):")
  for name, acc in r["langid"].items():
    lines.append(
        f"  {name}: {acc['micro']:.2f} / {acc['macro']:.2f} / {acc[lang]:.1f} / {acc[PIVOT]:.1f}"
    )
  lines.append("verdict:")
  for claim in r["verdict"]:
    mark = claim["outcome"]
    lines.append(f"  [{mark}] {claim['claim']}: {claim['evidence']}")
  return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel  (the [experiments] extra)

  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=import-outside-toplevel

  figure, axes = pyplot.subplots(
      1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2 * len(r["zero_resource"]), 2]}
  )
  groups = ((ZERO_RESOURCE_RUNS, r["zero_resource"]), (DIRTY_RUNS, [r["dirty_language"]]))
  for axis, (names, langs) in zip(axes, groups):
    directions = [direction(*p) for x in langs for p in ((PIVOT, x), (x, PIVOT))]
    x = np.arange(len(directions))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
      values = [r["runs"][name]["scores"][d]["chrf"] for d in directions]
      axis.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=LABELS[name])
    supervised = r["runs"][names[0]]["summary"]["supervised_chrf"]
    axis.axhline(supervised, color="grey", linestyle="--", label=f"{LABELS[names[0]]}: en<->S mean")
    axis.set_xticks(x, directions)
    axis.set(ylabel="chrF (validation, greedy)")
    axis.legend(fontsize=8)
  axes[0].set_title("zero-resource languages Z")
  axes[1].set_title(f"dirty data: L = {r['dirty_language']}")
  figure.suptitle("MT with monolingual data only: MASS, back-translation, filtering")
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  pyplot.close(figure)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m tools.mt_experiment", description=__doc__)
  parser.add_argument("--zero_resource", nargs="+", default=["ro", "ca"])
  parser.add_argument("--supervised", nargs="+", default=None)
  parser.add_argument("--num_supervised", type=int, default=8)
  parser.add_argument("--dirty_language", default=DIRTY_LANGUAGE)
  parser.add_argument("--steps", type=int, default=400)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--eval_examples", type=int, default=64, help="pairs per direction")
  parser.add_argument("--temperature", type=float, default=mt_tasks.DEFAULT_TEMPERATURE)
  parser.add_argument("--out_dir", default=None, help="the runs' MODEL_DIRs go here")
  parser.add_argument("--json_out", default="mt_experiment.json")
  parser.add_argument("--plot", default="mt_experiment.png")
  args = parser.parse_args(argv)
  benchmark_common.require_positive(
      parser, args, ("num_supervised", "steps", "batch_size", "eval_examples")
  )
  if not args.temperature > 0:
    parser.error(f"--temperature={args.temperature} must be > 0")
  return benchmark_common.finish_experiment(run, args, plot, format_table)


if __name__ == "__main__":
  sys.exit(main())
