"""A new task author trains the vocabulary their own task declares, which does not exist yet."""

import os
import pathlib
import subprocess
import sys
import uuid

import numpy as np
import pytest
import seqio
import tensorflow as tf

from model_zoo.errors import UserError
from tasks import pipeline, quickstart, vocabularies
from tools import train_vocabulary

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINES = quickstart.CORPUS_PATH.read_text(encoding="utf-8").splitlines()[:300]

_MODULE = """
import seqio

TEXT_FILE = {text_file!r}


def lines_to_targets(ds):
  return ds.map(lambda line: {{"targets": line}})


seqio.TaskRegistry.add(
    {task!r},
    source=seqio.TextLineDataSource({{"train": TEXT_FILE, "validation": TEXT_FILE}}),
    preprocessors=[
        lines_to_targets,
        seqio.preprocessors.tokenize,
        seqio.preprocessors.append_eos_after_trim,
    ],
    output_features={{
        "targets": seqio.Feature(seqio.SentencePieceVocabulary({model!r}), add_eos=True),
    }},
)
seqio.MixtureRegistry.add({mixture!r}, [({task!r}, 1.0)])
"""


@pytest.fixture
def new_task(tmp_path, monkeypatch):
  """(module, task, mixture, model_prefix): a task whose vocabulary is `<model_prefix>.model`."""
  tag = uuid.uuid4().hex[:8]
  module, task, mixture = f"vocab_user_{tag}", f"vocab_user_task_{tag}", f"vocab_user_mix_{tag}"
  text_file = tmp_path / "my_text.txt"
  text_file.write_text("\n".join(LINES) + "\n", encoding="utf-8")
  prefix = str(tmp_path / "my_spm")
  (tmp_path / f"{module}.py").write_text(
      _MODULE.format(text_file=str(text_file), task=task, mixture=mixture, model=prefix + ".model")
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  return module, task, mixture, prefix


def _args(module, mixture, prefix, vocab_size, split="train"):
  return [
      "--mixture", mixture, "--module", module, "--split", split,
      "--model_prefix", prefix, "--vocab_size", str(vocab_size),
  ]  # fmt: skip


def test_trains_the_vocabulary_its_own_task_declares(new_task, monkeypatch):
  module, task_name, mixture, prefix = new_task
  assert not os.path.exists(prefix + ".model")
  trained_on = []

  def recording(text_paths, *args, **kwargs):
    trained_on.extend(pathlib.Path(p).read_text(encoding="utf-8") for p in text_paths)
    return train_sentencepiece(text_paths, *args, **kwargs)

  train_sentencepiece = vocabularies.train_sentencepiece
  monkeypatch.setattr(vocabularies, "train_sentencepiece", recording)
  path = train_vocabulary.main(_args(module, mixture, prefix, 400))
  assert path == prefix + ".model" and os.path.exists(path)
  text_file = pathlib.Path(prefix).with_name("my_text.txt")
  assert trained_on == [text_file.read_text(encoding="utf-8")]  # the task's lines, exactly

  task = seqio.get_mixture_or_task(task_name)
  vocab = task.output_features["targets"].vocabulary
  assert vocab.vocab_size == 400
  ds = task.get_dataset(sequence_length=None, split="validation", shuffle=False)
  targets = [ex["targets"] for ex in ds.as_numpy_iterator()]
  assert all(t[-1] == vocab.eos_id for t in targets)
  assert [vocab.decode(t.tolist()) for t in targets] == LINES
  batch = next(iter(pipeline.get_batches(mixture, {"targets": 64}, "train", 2, shuffle=False)))
  assert batch["decoder_target_tokens"].shape == (2, 64) and np.any(batch["decoder_target_tokens"])


def test_the_text_is_the_lines_before_tokenization(new_task):
  module, _, mixture, prefix = new_task
  lines = pathlib.Path(prefix).with_name("my_text.txt").read_text(encoding="utf-8").splitlines()
  assert list(train_vocabulary.mixture_text(mixture, "train", module=module)) == lines == LINES
  text = train_vocabulary.mixture_text(mixture, "train", module=module, max_examples=5)
  assert list(text) == LINES[:5]


def test_stops_before_the_first_tokenizer_and_reads_only_output_features():
  def add_metadata(ds):
    return ds.map(lambda ex: {**ex, "id": "not text to learn"})

  def shout(ds, output_features, sequence_length):  # takes SeqIO's keyword args
    assert sequence_length is None and set(output_features) == {"inputs", "targets"}
    return ds.map(lambda ex: {**ex, "inputs": tf.strings.upper(ex["inputs"])})

  def poisoned(ds):
    raise AssertionError("ran a preprocessor after tokenization")

  name = f"vocab_order_{uuid.uuid4().hex[:8]}"
  missing = seqio.SentencePieceVocabulary("/nonexistent/spm.model")
  seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(
          lambda split, shuffle_files: tf.data.Dataset.from_tensor_slices(
              {"inputs": ["a\nb", "c"], "targets": ["d", "e"]}
          ),
          splits=("train",),
      ),
      preprocessors=[
          add_metadata,
          seqio.CacheDatasetPlaceholder(),
          shout,
          seqio.preprocessors.tokenize_and_append_eos,
          poisoned,
      ],
      output_features={"inputs": seqio.Feature(missing), "targets": seqio.Feature(missing)},
  )
  assert list(train_vocabulary.mixture_text(name, "train")) == ["A B", "d", "C", "e"]


def _my_tokenize(ds, output_features):
  """A tokenizer of the task's own, which train_vocabulary cannot tell from a text step."""
  return ds.map(lambda ex: {k: output_features[k].vocabulary.encode_tf(v) for k, v in ex.items()})


@pytest.mark.parametrize(
    "text_file, tokenizer, vocabulary, message",
    [
        (
            "/nonexistent/text.txt",
            seqio.preprocessors.tokenize,
            "/nonexistent/spm.model",
            r"needs a file that does not exist: .*/nonexistent/text\.txt",
        ),
        (
            str(quickstart.CORPUS_PATH),
            _my_tokenize,
            "/nonexistent/spm.model",
            r"does not exist: .*/nonexistent/spm\.model.*seqio\.preprocessors\.tokenize",
        ),
        (
            str(quickstart.CORPUS_PATH),
            _my_tokenize,
            None,  # the quickstart's, which loads
            r"none of its output features \['targets'\] is text.*seqio\.preprocessors\.tokenize",
        ),
    ],
)
def test_tasks_it_cannot_read_are_user_errors(text_file, tokenizer, vocabulary, message):
  name = f"vocab_unreadable_{uuid.uuid4().hex[:8]}"
  if vocabulary:
    vocabulary = seqio.SentencePieceVocabulary(vocabulary)
  else:
    vocabulary = quickstart.quickstart_vocabulary()
  seqio.TaskRegistry.add(
      name,
      source=seqio.TextLineDataSource({"train": text_file}),
      preprocessors=[lambda ds: ds.map(lambda line: {"targets": line}), tokenizer],
      output_features={"targets": seqio.Feature(vocabulary)},
  )
  with pytest.raises(pipeline.DataError, match=rf"'{name}'.*{message}"):
    list(train_vocabulary.mixture_text(name, "train"))


def test_user_mistakes_are_user_errors(new_task):
  module, _, mixture, prefix = new_task
  with pytest.raises(pipeline.DataError, match="no SeqIO task or mixture named"):
    train_vocabulary.main(_args(module, mixture + "_typo", prefix, 400))
  with pytest.raises(pipeline.DataError, match=r"--split='test'.*\['train', 'validation'\]"):
    train_vocabulary.main(_args(module, mixture, prefix, 400, split="test"))
  with pytest.raises(UserError, match=r"vocab_size=100000 .*at most \d+"):
    train_vocabulary.main(_args(module, mixture, prefix, 100000))
  with pytest.raises(pipeline.DataError, match="--max_examples"):
    train_vocabulary.main(_args(module, mixture, prefix, 400) + ["--max_examples", "0"])
  assert not os.path.exists(prefix + ".model")


def test_no_text_is_a_user_error(tmp_path):
  name = f"vocab_empty_{uuid.uuid4().hex[:8]}"
  seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(
          lambda split, shuffle_files: tf.data.Dataset.from_tensor_slices(
              {"targets": np.zeros([0], np.str_)}
          ),
          splits=("train",),
      ),
      preprocessors=[seqio.preprocessors.tokenize],
      output_features={"targets": seqio.Feature(seqio.SentencePieceVocabulary("/none.model"))},
  )
  args = ["--mixture", name, "--model_prefix", str(tmp_path / "spm"), "--vocab_size", "64"]
  with pytest.raises(pipeline.DataError, match=rf"{name}.*no text"):
    train_vocabulary.main(args)


def test_command_line_mistake_is_one_error_line(new_task):
  module, _, mixture, prefix = new_task
  module_dir = os.path.dirname(prefix)
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([module_dir, REPO_ROOT])}
  env.pop("PODZOO_DEBUG", None)
  result = subprocess.run(
      [sys.executable, "-m", "tools.train_vocabulary", *_args(module, mixture, prefix, 100000)],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert result.returncode == 1, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
  assert len(errors) == 1 and "vocab_size=100000" in errors[0], result.stderr
