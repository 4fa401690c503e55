"""tools/build_adapter_catalog (+ tools/adapter_catalog_tasks): two dozen adapters on real data
of the base's vocabulary, some poorly described; a text adapter's data is one language's
held-apart documents; the real command lines build an adapter, its card and the index."""

import json

import numpy as np
import pytest
import seqio

from tasks.parallel import corpus
from tasks.pretraining import text, vocabulary
from tools import adapter_catalog_tasks as cat
from tools import build_adapter_catalog as build
from tools import flan_experiment, stylus_experiment
from trainers import adapters
from trainers import train as train_lib
from trainers.stylus.retriever import INDEX_FILE, AdapterIndex


def test_two_dozen_adapters_of_different_real_data_some_poorly_described():
  assert len(cat.ADAPTERS) >= 24
  assert (
      len({a.name for a in cat.ADAPTERS})
      == len({a.task for a in cat.ADAPTERS})
      == len(cat.ADAPTERS)
  )
  base_vocab = vocabulary.pretraining_vocabulary()
  for adapter in cat.ADAPTERS:  # the base's pieces (Flan's vocabulary lacks the mode tokens)
    task = seqio.get_mixture_or_task(adapter.task)
    for feature in task.output_features.values():
      assert feature.vocabulary.sentencepiece_model_file == base_vocab.sentencepiece_model_file
      assert feature.vocabulary.vocab_size <= vocabulary.MODEL_VOCAB_SIZE
    assert set(task.output_features) == set(adapter.lengths) == {"inputs", "targets"}
    assert cat.describe_task(adapter.task), adapter.task
  poor = [a for a in cat.ADAPTERS if len(a.description.split()) < 3]
  assert 6 <= len(poor) <= len(cat.ADAPTERS) - 6
  assert cat.describe_task("no_such_task") == ""


def test_task_phrases_name_the_language_family_and_setting():
  assert cat.describe_task(cat.text_task("de")).startswith("continues German text")
  assert "Finnish" in cat.describe_task(cat.text_task("fi"))
  assert "spoken French" in cat.describe_task(cat.spoken_task("fr"))
  assert "Genesis" in cat.describe_task(cat.GENESIS_TASK)
  cot = cat.describe_task("flan_arithmetic_cot")
  assert cot.startswith("arithmetic word problems") and "chain-of-thought" in cot
  assert "few-shot" in cat.describe_task("flan_langid_few_shot")


def test_a_text_adapter_reads_its_own_languages_held_apart_documents_after_the_s_token():
  task = seqio.get_mixture_or_task(cat.text_task("el"))
  held_out = list(corpus.monolingual("el", "validation"))
  train_lines = set(corpus.monolingual("el", "train"))
  examples = list(task.get_dataset(None, split="validation", shuffle=False).take(5))
  assert len(examples) == 5
  vocab = vocabulary.pretraining_vocabulary()
  for example in examples:
    inputs, targets = example["inputs"].numpy(), example["targets"].numpy()
    assert inputs[0] == vocabulary.mode_id("S")
    assert targets[-1] == 1  # EOS
    document = vocab.decode(list(inputs[1:]) + list(targets[:-1]))
    lines = document.split("\n")
    assert 1 <= len(lines) <= text.MESSAGES_PER_DOCUMENT
    whole = lines[1:-1]  # the prefix/continuation cut may fall inside the first or last line
    assert whole and not train_lines & set(whole)
    start = held_out.index(whole[0])  # one document: consecutive held-out messages
    assert held_out[start : start + len(whole)] == whole


def _train_base(model_dir, steps):
  flags = [
      f"--gin_file={f}"
      for f in (flan_experiment.MODEL_GIN, *flan_experiment.RUN_GINS, flan_experiment.PRETRAIN_GIN)
  ] + [
      f"--gin.{b.replace(' = ', '=', 1)}"
      for b in (
          *flan_experiment.common_bindings(steps),
          f"MODEL_DIR = '{model_dir}'",
          f"TRAIN_STEPS = {steps}",
          "BATCH_SIZE = 8",
          f"EVAL_PERIOD = {steps}",
          "EVAL_STEPS = 1",
      )
  ]
  assert train_lib.main(flags) == 0


@pytest.mark.slow
def test_the_tool_builds_an_adapter_its_card_and_the_index_through_the_command_lines(
    tmp_path, capsys
):
  catalog_dir, base_dir = tmp_path / "catalog", tmp_path / "base"
  assert build.main(["--base_dir", str(base_dir), "--catalog_dir", str(catalog_dir)]) == 1
  err = capsys.readouterr().err
  assert f"--base_dir {base_dir} holds no checkpoint" in err and "Traceback" not in err
  assert not catalog_dir.exists()

  _train_base(base_dir, 2)
  args = ["--base_dir", str(base_dir), "--catalog_dir", str(catalog_dir), "--only", "genesis"]
  args += ["--steps", "2", "--samples", "2", "--rank", "2", "--json_out", str(tmp_path / "c.json")]
  assert build.main(args) == 0
  (genesis,) = [a for a in cat.ADAPTERS if a.name == "genesis"]
  card = adapters.read_card(str(catalog_dir / "genesis"))
  assert card["task"] == genesis.task and card["steps"] == 2 and card["rank"] == 2
  assert card["alpha"] == 4.0 and card["description"] == genesis.description
  predictions = tmp_path / "catalog_runs" / "genesis" / "inference" / "predict-2.jsonl"
  predicted = [json.loads(line) for line in predictions.read_text().splitlines()]
  assert [s["input"] for s in card["sample_outputs"]] == [p["input"] for p in predicted]
  assert len(predicted) == 2

  index = AdapterIndex.load(str(catalog_dir / INDEX_FILE))
  assert index.names == ("genesis",)
  assert index.descriptions[0].startswith(cat.describe_task(genesis.task))
  embedder = build.base_embedder(str(base_dir))
  assert index.embedder == embedder.name == f"podzoo-mean-pool:{card['base_fingerprint']}"
  np.testing.assert_allclose(index.vectors, embedder.embed(index.descriptions), atol=1e-5)

  # Again, with a damaged entry beside it: the adapter is kept, the damaged one skipped.
  (catalog_dir / "broken").mkdir()
  (catalog_dir / "broken" / "card.json").write_text("{not json")
  (catalog_dir / "broken" / "weights").mkdir()
  capsys.readouterr()
  assert build.main(args) == 0
  out = capsys.readouterr().out
  assert "genesis: in the catalog already" in out and "train genesis" not in out
  summary = json.loads((tmp_path / "c.json").read_text())
  assert set(summary["adapters"]) == {"genesis"} and "damaged" in summary["skipped"]["broken"]
  assert AdapterIndex.load(str(catalog_dir / INDEX_FILE)).names == ("genesis",)

  # The Stylus experiment on this catalog: with one adapter, `random` and `retriever` merge
  # it as Stylus would, the base merges none.
  out = tmp_path / "stylus.json"
  code = stylus_experiment.main(
      ["--base_dir", str(base_dir), "--catalog_dir", str(catalog_dir), "--per_task", "2"]
      + ["--k", "1", "--max_new_tokens", "4", "--json_out", str(out)]
      + ["--plot", str(tmp_path / "stylus.png")]
  )
  assert code == 0
  r = json.loads(out.read_text())
  assert [p["adapter"] for p in r["prompts"]] == ["genesis", "genesis"]
  methods = r["methods"]
  assert methods["base"]["right_adapter"] == 0 and methods["base"]["adapters_merged"] == 0
  assert methods["random"]["right_adapter"] == methods["retriever"]["right_adapter"] == 100
  assert [row["nats_per_token"] for row in methods["random"]["rows"]] == [
      row["nats_per_token"] for row in methods["retriever"]["rows"]
  ]
  assert methods["random"]["nats_per_token"] != methods["base"]["nats_per_token"]
  assert methods["base"]["accuracy"] is None and methods["base"]["chrf"] is not None
  for stylus_row, mean_row in zip(methods["stylus"]["rows"], methods["stylus_mean"]["rows"]):
    assert set(mean_row["adapters"]) == set(stylus_row["adapters"])
    if mean_row["adapters"]:
      assert sum(mean_row["adapters"].values()) == pytest.approx(1.0)
  assert (tmp_path / "stylus.png").stat().st_size > 0
