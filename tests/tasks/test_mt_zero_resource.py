"""tasks/mt/zero_resource: MASS over given lines, back-translation from a table, mixtures with
stand-ins, and all three from a JSON spec."""

import json

import pytest
import seqio

from model_zoo.errors import ConfigError
from tasks.mt import tasks as mt
from tasks.mt import zero_resource
from tasks.parallel import corpus, vocabulary

VOCAB = vocabulary.parallel_vocabulary()
LENGTHS = {"inputs": 64, "targets": 64}
MASK = VOCAB.tokenizer.piece_to_id(vocabulary.MASK_TOKEN)


def fresh(name: str) -> str:
  """`name`, unregistered (a test may run twice in one process)."""
  seqio.TaskRegistry.remove(name)
  seqio.MixtureRegistry.remove(name)
  return name


def examples(name: str, split: str = "train", count: int = 3) -> list[dict]:
  dataset = seqio.get_mixture_or_task(name).get_dataset(LENGTHS, split=split, shuffle=False)
  return [{k: v.numpy() for k, v in ex.items()} for ex in dataset.take(count)]


def test_lines_mass_task_masks_the_given_lines_as_the_corpus_task_does():
  lines = ["Open the file now", "שלום עולם", "Close the window please"]
  name = fresh("zr_test_lines_he")
  zero_resource.add_lines_mass_task(name, "he", {"train": lines})
  tag = VOCAB.tokenizer.piece_to_id(vocabulary.language_tag("he"))
  for line, example in zip(lines, examples(name)):
    inputs, targets = example["inputs"].tolist(), example["targets"].tolist()
    assert inputs[0] == tag and targets[-1] == 1
    hidden = [i for i, t in enumerate(inputs[1:]) if t == MASK]
    filled = inputs[1:]
    filled[hidden[0] : hidden[-1] + 1] = targets[:-1]
    assert VOCAB.decode(filled) == line
    assert len(hidden) == (len(filled) + 1) // 2  # MASS's half, as mass.span_length
  assert seqio.get_mixture_or_task(name).preprocessors == mt.add_mass_task("he").preprocessors


def test_a_line_source_needs_lines():
  with pytest.raises(ConfigError, match="at least one line"):
    zero_resource.lines_source("he", {"train": []})


def test_table_back_translation_pairs_each_text_with_its_looked_up_translation():
  texts = corpus.monolingual("br", "train")
  table = {text: f"EN {i}" for i, text in enumerate(texts)}
  name = fresh("zr_test_bt_br")
  zero_resource.add_table_back_translation_task(name, table, "en", "br")
  for example in examples(name):
    target = example["targets_pretokenized"].decode()
    assert example["inputs_pretokenized"].decode() == table[target]
  assert name in mt.mixing_rates(5.0, [name])  # sized like the corpus tasks
  with pytest.raises(ConfigError, match="no translation"):
    zero_resource.table_predict_fn(table)(["not a corpus text"])


def test_a_stand_in_takes_the_rate_of_the_task_it_replaces():
  lines = fresh("zr_test_lines_br")
  zero_resource.add_lines_mass_task(lines, "br", {"train": ["a line", "another line"]})
  tasks = ["mt_en_de", "mt_de_en", "mass_br"]
  name = fresh("zr_test_mixture")
  mixture = zero_resource.register_mixture_with_stand_ins(name, 2.0, tasks, {"mass_br": lines})
  rates = {task.name: mixture.get_rate(task) for task in mixture.tasks}
  expected = mt.mixing_rates(2.0, tasks)
  expected[lines] = expected.pop("mass_br")
  assert rates == pytest.approx(expected)
  with pytest.raises(ConfigError, match=r"\['mass_fr'\] are not among"):
    zero_resource.register_mixture_with_stand_ins("zr_unused", 2.0, tasks, {"mass_fr": lines})


def test_a_spec_registers_tasks_then_mixtures(tmp_path):
  texts = corpus.monolingual("br", "train")
  names = [fresh(n) for n in ("zr_spec_lines", "zr_spec_bt", "zr_spec_mixture")]
  spec = {
      "lines_mass_tasks": [{"name": names[0], "lang": "br", "lines": {"train": ["a b c"]}}],
      "back_translation_tasks": [
          {"name": names[1], "source": "en", "target": "br", "table": {t: "x" for t in texts}}
      ],
      "mixtures": [
          {
              "name": names[2],
              "temperature": 1.0,
              "tasks": ["mt_en_de", "mass_br", names[1]],
              "stand_ins": {"mass_br": names[0]},
          }
      ],
  }
  path = tmp_path / "spec.json"
  path.write_text(json.dumps(spec))
  zero_resource.register_spec(path)
  mixture = seqio.get_mixture_or_task(names[2])
  assert sorted(task.name for task in mixture.tasks) == sorted(["mt_en_de", *names[:2]])
  assert examples(names[2], count=4)  # every task of it reads
