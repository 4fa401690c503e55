"""A task author's path: README's "Adding your own task", the vocabulary tool, early errors."""

import pathlib
import re
import shlex

import pytest
import seqio
import tensorflow as tf

from tasks import pipeline, quickstart
from tools import train_vocabulary
from trainers import train

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = pathlib.Path(__file__).parents[2]
EXAMPLE = pathlib.Path(__file__).parent / "my_tasks_example.py"


def readme_block(after_heading: str, language: str) -> str:
  """The first ```language block after `after_heading` in README.md."""
  readme = (ROOT / "README.md").read_text(encoding="utf-8")
  section = readme.split(after_heading, 1)[1]
  return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_readme_example_module_is_the_tested_file():
  assert readme_block("## Adding your own task", "python") == EXAMPLE.read_text(encoding="utf-8")


@pytest.mark.slow
def test_readme_example_trains_on_the_mixture(tmp_path, capfd):
  """The README's training command, its sizes shrunk to 2 steps (tests/test_readme_commands.py
  runs it verbatim, under -m slow, and checks that it learns)."""
  command = re.sub(r"\\\n\s*", " ", readme_block("## Adding your own task", "bash"))
  argv = shlex.split(command)
  assert argv[:3] == ["python", "-m", "trainers.train"], argv
  argv = argv[3:]
  gin_files = [a for a in argv if a.startswith("--gin_file=")]
  assert gin_files == [
      "--gin_file=gin/models/decoder_only_tiny.gin",
      "--gin_file=gin/runs/pretrain.gin",
      "--gin_file=gin/runs/short_run.gin",  # after pretrain.gin: AdamW, a 50-step warmup
  ]
  assert "--gin.MIXTURE_OR_TASK_MODULE='my_tasks'" in argv
  assert "--gin.MIXTURE_OR_TASK_NAME='my_mixture'" in argv
  shrunk = {
      "MIXTURE_OR_TASK_MODULE": "'tests.tasks.my_tasks_example'",
      "MODEL_DIR": f"'{tmp_path}'",
      "TRAIN_STEPS": "2",
      "BATCH_SIZE": "8",
      "TASK_FEATURE_LENGTHS": '{"targets": 32}',
      "EVAL_PERIOD": "2",
      "EVAL_STEPS": "1",
      "CHECKPOINT_PERIOD": "2",
  }
  argv = [a for a in argv if a.split("=", 1)[0][len("--gin.") :] not in shrunk]
  code = train.main(argv + [f"--gin.{name}={value}" for name, value in shrunk.items()])
  out, err = capfd.readouterr()
  assert code == 0, out + err
  assert (tmp_path / "checkpoints" / "2").is_dir()
  assert "eval step 2" in out + err
  assert (tmp_path / "eval_metrics.jsonl").read_text().strip()


def test_vocabulary_from_a_task_keeps_language_tags_whole(tmp_path):
  path = train_vocabulary.main(
      [
          "--mixture",
          quickstart.TASK_NAME,
          "--split",
          "train",
          "--model_prefix",
          str(tmp_path / "spm"),
          "--vocab_size",
          "512",
          "--language_tags",
          "de,fr",
          "--ul2_mode_tokens",
      ]
  )
  vocab = seqio.SentencePieceVocabulary(path)
  for piece in ("<2de>", "<2fr>", "[NLU]", "[NLG]", "[S2S]"):
    pieces = vocab.tokenizer.encode_as_pieces(f"{piece} In the beginning")
    assert piece in pieces, pieces
  pipeline.check_special_tokens(vocab, ["<2de>", "<2fr>", "[S2S]"])
  assert vocab.decode(vocab.encode("In the beginning")) == "In the beginning"


def test_max_examples_limits_the_text():
  text = list(train_vocabulary.mixture_text(quickstart.TASK_NAME, "train", max_examples=3))
  assert text == quickstart.split_lines("train")[:3]


def test_missing_special_token_names_it_and_the_flag():
  with pytest.raises(pipeline.DataError, match=r"\['<2de>'\].*--language_tags"):
    pipeline.check_special_tokens(quickstart.quickstart_vocabulary(), ["<2de>"])


def _register_one_feature_task(name, feature):
  """A throwaway task whose only output feature is `feature`."""
  if name not in seqio.TaskRegistry.names():
    seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(
            lambda split, shuffle_files: tf.data.Dataset.from_tensor_slices({feature: ["a"]}),
            splits=("train",),
        ),
        preprocessors=[seqio.preprocessors.tokenize],
        output_features={feature: seqio.Feature(quickstart.quickstart_vocabulary())},
    )


@pytest.mark.parametrize("converter", ["encdec", "prefix_lm"])
def test_task_without_inputs_fails_for_inputs_converters(converter):
  _register_one_feature_task("authoring_targets_only", "targets")
  if "authoring_mix" not in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.add("authoring_mix", [("authoring_targets_only", 1.0)])
  pipeline.check_features("authoring_mix", "decoder")
  with pytest.raises(
      pipeline.DataError,
      match=rf"'authoring_targets_only'.*\['targets'\].*'{converter}'.*lacks \['inputs'\]",
  ):
    pipeline.check_features("authoring_mix", converter)


def test_task_without_targets_fails():
  _register_one_feature_task("authoring_inputs_only", "inputs")
  with pytest.raises(pipeline.DataError, match=r"lacks \['targets'\].*add the missing"):
    pipeline.check_features("authoring_inputs_only", "decoder")


def test_batch_iterator_checks_features_before_reading():
  _register_one_feature_task("authoring_targets_only", "targets")
  with pytest.raises(pipeline.DataError, match=r"'authoring_targets_only'.*lacks \['inputs'\]"):
    pipeline.get_batch_iterator(
        "authoring_targets_only",
        {"inputs": 8, "targets": 8},
        "train",
        1,
        feature_converter="encdec",
    )
