"""Mistakes users make on the command line: one `ERROR:` line naming the fix, exit 1, no
traceback, and nothing in an existing MODEL_DIR changed.

Every row runs a real entry point in-process against a MODEL_DIR that holds a finished
two-step run (trained once for the module), so "nothing lost" is checked by comparing the
directory before and after.
"""

import pathlib
import textwrap

import pytest

from tests.trainers.test_cli import quick_flags
from trainers import eval as eval_lib
from trainers import infer, train

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ENTRIES = {"train": train.main, "eval": eval_lib.main, "infer": infer.main}
RUN_GIN = {
    "train": [],
    "eval": ["--gin_file=gin/runs/eval.gin"],
    "infer": ["--gin_file=gin/runs/infer.gin"],
}

# Files written into the module's scratch dir (on sys.path) for the rows that need them.
SCRATCH_FILES = {
    "bad_syntax.gin": "TRAIN_STEPS = 3\nTransformerConfig.emb_dim = (32\nEVAL_PERIOD = 2\n",
    "unquoted.gin": "TRAIN_STEPS = 3\nMODEL_DIR = /tmp/somewhere\n",
    "required.gin": "LOG_EVERY = %gin.REQUIRED\ntrain.log_period = %LOG_EVERY\n",
    "not_a_dir": "a file where MODEL_DIR should be\n",
    "broken_import_tasks.py": "import json\nimport no_such_dependency_xyz  # the user's typo\n",
    "missing_spm_tasks.py": textwrap.dedent("""\
        import seqio
        from tasks import quickstart

        VOCAB = seqio.SentencePieceVocabulary("/nonexistent/dir/my_spm.model")
        if "missing_spm_lm" not in seqio.TaskRegistry.names():
          seqio.TaskRegistry.add(
              "missing_spm_lm",
              source=seqio.TextLineDataSource({"train": str(quickstart.CORPUS_PATH)}),
              preprocessors=[
                  seqio.preprocessors.rekey,
                  seqio.preprocessors.tokenize,
              ],
              output_features={"targets": seqio.Feature(VOCAB)},
          )
        """),
    "latin1_prompts.txt": b"In the beginning\nAnd Jos\xe9ph\n",
    "latin1_prompts.jsonl": b'{"input": "ok"}\n{"input": "Jos\xe9ph"}\n',
}

# (id, entry, arguments ({scratch} is the scratch dir), every substring the error must hold)
# One row a mistake, as written (pyink would give each item a line).
# fmt: off
MISTAKES = [
    ("a required macro left unset", "train", ["--gin_file={scratch}/required.gin"],
     ["LOG_EVERY is required", "--gin.LOG_EVERY=..."]),
    ("unquoted string", "train", ["--gin.MODEL_DIR=/tmp/x"], ["--gin.MODEL_DIR=\"'/tmp/x'\""]),
    ("unquoted word", "train", ["--gin.MIXTURE_OR_TASK_NAME=my_task"], ["\"'my_task'\""]),
    ("gin syntax error in a file", "train", ["--gin_file={scratch}/bad_syntax.gin"],
     ["bad_syntax.gin, line 3: EVAL_PERIOD = 2", "Expected ',' or ')'"]),
    ("unquoted string in a file", "train", ["--gin_file={scratch}/unquoted.gin"],
     ["unquoted.gin, line 2: MODEL_DIR = /tmp/somewhere", "write MODEL_DIR = '/tmp/somewhere'"]),
    ("unbalanced brackets", "train", ["--gin.TASK_FEATURE_LENGTHS={'targets': 32"],
     ["--gin.TASK_FEATURE_LENGTHS", "unbalanced brackets"]),
    ("MODEL_DIR is a file", "train", ["--gin.MODEL_DIR='{scratch}/not_a_dir'"],
     ["not_a_dir' is a file, not a directory", "--gin.MODEL_DIR"]),
    ("EVAL_PERIOD=0", "train", ["--gin.EVAL_PERIOD=0"],
     ["EVAL_PERIOD=0", ">= 1", "--gin.train.eval_dataset_cfg=None"]),
    ("EVAL_STEPS=0", "train", ["--gin.EVAL_STEPS=0"], ["EVAL_STEPS=0", "or None"]),
    ("negative TRAIN_STEPS", "train", ["--gin.TRAIN_STEPS=-5"], ["TRAIN_STEPS=-5", ">= 1"]),
    ("TRAIN_STEPS as a string", "train", ["--gin.TRAIN_STEPS='100'"], ["TRAIN_STEPS='100'"]),
    ("log period 0", "train", ["--gin.train.log_period=0"], ["train.log_period=0"]),
    ("negative learning rate", "train", ["--gin.linear_warmup_constant.learning_rate=-0.003"],
     ["linear_warmup_constant.learning_rate=-0.003", "must be > 0"]),
    ("negative warmup", "train", ["--gin.linear_warmup_constant.warmup_steps=-1"],
     ["linear_warmup_constant.warmup_steps=-1"]),
    ("mistyped parameter", "train", ["--gin.TransformerConfig.num_layer=2"],
     ["'num_layer'", "Did you mean: num_layers"]),
    ("mistyped optimizer parameter", "train", ["--gin.adamw.weight_decy=0.1"],
     ["Did you mean: weight_decay"]),
    ("unused macro", "train", ["--gin.NOT_A_REAL_BINDING=3"], ["NOT_A_REAL_BINDING"]),
    ("mistyped macro", "train", ["--gin.TRAIN_STPES=3"], ["Did you mean: TRAIN_STEPS"]),
    ("mistyped configurable", "train", ["--gin.TransformerConfg.emb_dim=3"],
     ["Did you mean: TransformerConfig"]),
    ("mistyped task", "train", ["--gin.MIXTURE_OR_TASK_NAME='kjv_genesis_lmm'"],
     ["'kjv_genesis_lm'", "MIXTURE_OR_TASK_NAME"]),
    ("vocabulary bigger than the embedding", "train", ["--gin.TransformerConfig.vocab_size=512"],
     ["TransformerConfig.vocab_size=1024"]),
    ("mesh that does not divide the devices", "train",
     ["--gin.Partitioner.mesh_shape=(3, -1, 1, 1)"], ["Partitioner.mesh_shape=(3, -1, 1, 1)"]),
    ("batch not divisible by the data-parallel size", "train", ["--gin.BATCH_SIZE=12"],
     ["BATCH_SIZE=12", "divisible"]),
    ("batch size 0", "train", ["--gin.BATCH_SIZE=0"], ["BATCH_SIZE=0"]),
    ("task module that does not exist", "train",
     ["--gin.MIXTURE_OR_TASK_MODULE='no_such_module_xyz'"], ["no_such_module_xyz", "PYTHONPATH"]),
    ("task module whose own import fails", "train",
     ["--gin.MIXTURE_OR_TASK_MODULE='broken_import_tasks'"],
     ["'broken_import_tasks'", "was found, but an import inside it failed",
      "no_such_dependency_xyz", "broken_import_tasks.py:2"]),
    ("task with a missing sentencepiece file", "train",
     ["--gin.MIXTURE_OR_TASK_MODULE='missing_spm_tasks'",
      "--gin.MIXTURE_OR_TASK_NAME='missing_spm_lm'"],
     ["'missing_spm_lm'", "/nonexistent/dir/my_spm.model", "does not exist",
      "tools.train_vocabulary"]),
    ("unknown flag", "train", ["--gin_fle=gin/runs/quickstart.gin"], ["Unknown flag '--gin_fle"]),
    ("override without a value", "train", ["--gin.TRAIN_STEPS"], ["needs a value"]),
    ("missing gin file", "train", ["--gin_file=gin/runs/no_such.gin"],
     ["gin/runs/no_such.gin: file not found"]),
    ("a non-number process count", "train", ["--num_processes=two"], ["--num_processes=two"]),
    ("eval of a MODEL_DIR without checkpoints", "eval", ["--gin.MODEL_DIR='{scratch}/empty'"],
     ["No checkpoint", "MODEL_DIR"]),
    ("infer of a step that does not exist", "infer", ["--gin.infer.checkpoint_step=7"],
     ["No checkpoint at step 7"]),
    ("infer mode misspelled", "infer", ["--gin.infer.mode='predcit'"], ["predcit", "predict"]),
    ("infer input file missing", "infer", ["--gin.infer.input_file='{scratch}/none.txt'"],
     ["none.txt"]),
    ("non-UTF-8 prompt file", "infer", ["--gin.infer.input_file='{scratch}/latin1_prompts.txt'"],
     ["latin1_prompts.txt", "line 2", "UTF-8"]),
    ("non-UTF-8 JSONL input", "infer",
     ["--gin.infer.input_file='{scratch}/latin1_prompts.jsonl'"],
     ["latin1_prompts.jsonl", "line 2", "UTF-8"]),
    ("top_p out of range", "infer",
     ["--gin.infer.decoder=@Sampling()", "--gin.Sampling.top_p=1.5"], ["Sampling.top_p=1.5"]),
]
# fmt: on


def _tree(path: pathlib.Path) -> dict[str, tuple[int, int]]:
  """Every file under `path` with its size and modification time."""
  return {
      str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
      for p in sorted(path.rglob("*"))
      if p.is_file()
  }


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
  directory = tmp_path_factory.mktemp("mistakes")
  for name, content in SCRATCH_FILES.items():
    path = directory / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
  return directory


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("trained")
  code = train.main(quick_flags(model_dir, 2))
  assert code == 0
  return model_dir


@pytest.mark.parametrize(
    "entry, extra, expected", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_a_mistake_is_one_error_line_naming_the_fix(
    entry, extra, expected, scratch, trained, capfd, monkeypatch
):
  monkeypatch.syspath_prepend(str(scratch))
  before = _tree(trained)
  argv = [
      *quick_flags(trained, 2),
      *RUN_GIN[entry],
      *(arg.replace("{scratch}", str(scratch)) for arg in extra),
  ]
  capfd.readouterr()
  code = ENTRIES[entry](argv)
  out, err = capfd.readouterr()
  errors = [line for line in err.splitlines() if line.startswith("ERROR: ")]
  assert code == 1, out + err
  assert len(errors) == 1, err
  message = err[err.index("ERROR: ") :]
  for text in expected:
    assert text in message, message
  assert "Traceback" not in out + err
  assert _tree(trained) == before  # nothing lost or rewritten


def test_the_table_covers_thirty_mistakes_of_the_three_entry_points():
  assert len(MISTAKES) >= 30 and len({m[0] for m in MISTAKES}) == len(MISTAKES)
  assert {m[1] for m in MISTAKES} == set(ENTRIES)
