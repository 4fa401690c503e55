"""Every ```bash block of README.md runs verbatim, and the custom-task walkthrough learns.

The rules, which README.md follows:
- Each ```bash block is run as written (its `\\`-continued lines joined) by `bash -e -c` in
  the repository root. The one rewrite is the README's `/tmp/` prefix, which becomes a
  directory of this test module, so runs collide neither with a user's nor with each other.
- A leading `pip install -e ".[extra,...]" && ` is not re-run: the test runs inside the
  installed project; each extra it names must exist in setup.py's `extras_require`.
- A block whose first line is `# not run by tests/test_readme_commands.py<, why>` is not
  run (the test suite's own command); the reason must be given.
- Every block is claimed by exactly one entry of `BLOCKS` and each entry claims exactly one
  block, so a new, changed or removed block fails `test_every_bash_block_is_checked` until
  this file knows how to check it.
- The README's python block (`my_tasks.py`) is written into a directory on PYTHONPATH, as
  the README tells the reader to do.
- The commands run in a user's environment: one CPU device (not the suite's 8 fake ones),
  no TF_CPP_MIN_LOG_LEVEL, no PODZOO_VERBOSE; their output must be free of TensorFlow's
  import banner.

Training runs are slow (`-m slow`); the quickstart trains once per module and eval/infer
use its MODEL_DIR. The walkthrough's final eval cross entropy must beat the unigram entropy
of its corpus, computed here from token counts.
"""

import json
import os
import pathlib
import re
import runpy
import subprocess
import sys

import numpy as np
import pytest
import setuptools

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP_MARKER = "# not run by tests/test_readme_commands.py"
PIP_PREFIX = re.compile(r'^pip install -e "\.\[([\w,-]+)\]" && ')
BANNER = ("oneDNN", "cuInit", "absl::InitializeLog", "cuda drivers")
TIMEOUT_S = 1800  # a training run on a loaded 2-core machine

# name -> a pattern that identifies the block (matched against its text, continuations joined).
BLOCKS = {
    "quickstart": r'^pip install -e "\.\[tasks\]" && python -m trainers\.train '
    r"--gin_file=gin/runs/quickstart\.gin --gin\.MODEL_DIR=\"'/tmp/podzoo_quickstart'\"$",
    "walkthrough": r"^python -m trainers\.train .*--gin\.MIXTURE_OR_TASK_NAME=\"'my_mixture'\"",
    "vocabulary": r"^python -m tools\.train_vocabulary --mixture my_mixture --module my_tasks ",
    "test_suite": r"^# not run by tests/test_readme_commands\.py.*\n"
    r'pip install -e "\.\[test\]" && python -m pytest -q$',
    "pod_job_on_cpu": r"^XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m trainers\.train ",
    "eval": r"^python -m trainers\.eval --gin_file=gin/runs/quickstart\.gin ",
    "infer": r"^printf '[^']*' > /tmp/prompts\.txt\npython -m trainers\.infer ",
}


# --- reading the README ---------------------------------------------------------------------
def _fenced_blocks(language: str) -> list[str]:
  """The text of every ```language block of README.md, in order."""
  blocks, current = [], None
  for line in README.read_text(encoding="utf-8").splitlines():
    if current is None and line.strip() == f"```{language}":
      current = []
    elif current is not None and line.strip() == "```":
      blocks.append("\n".join(current))
      current = None
    elif current is not None:
      current.append(line)
  assert current is None, f"README.md: an unclosed ```{language} block"
  return blocks


def bash_blocks() -> list[str]:
  """Each ```bash block with its `\\`-continued lines joined into one line."""
  return [re.sub(r"\\\n\s*", " ", block).strip() for block in _fenced_blocks("bash")]


def claimed(block: str) -> list[str]:
  return [name for name, pattern in BLOCKS.items() if re.search(pattern, block, re.S)]


def block(name: str) -> str:
  found = [b for b in bash_blocks() if name in claimed(b)]
  assert len(found) == 1, f"README.md has {len(found)} ```bash blocks matching BLOCKS[{name!r}]"
  return found[0]


def without_pip_prefix(command: str) -> tuple[list[str], str]:
  """(the extras a leading `pip install -e ".[...]" && ` names, the rest of the command)."""
  match = PIP_PREFIX.match(command)
  if not match:
    return [], command
  return match.group(1).split(","), command[match.end() :]


# --- running a block ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def readme_tmp(tmp_path_factory) -> pathlib.Path:
  """What the README's /tmp/ becomes; `pythonpath/my_tasks.py` is the README's python block."""
  tmp = tmp_path_factory.mktemp("readme")
  (tmp / "pythonpath").mkdir()
  (python_block,) = _fenced_blocks("python")
  (tmp / "pythonpath" / "my_tasks.py").write_text(python_block + "\n", encoding="utf-8")
  return tmp


def user_env(readme_tmp: pathlib.Path) -> dict[str, str]:
  """The environment of a user's shell, with my_tasks.py on PYTHONPATH."""
  env = {k: v for k, v in os.environ.items() if k not in ("PODZOO_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
  xla = [
      f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f
  ]
  env["XLA_FLAGS"] = " ".join(xla)  # one CPU device, not the suite's 8 fake ones
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (str(readme_tmp / "pythonpath"), env.get("PYTHONPATH")) if p
  )
  env["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), env.get("PATH", "")))
  return env


def run_block(name: str, readme_tmp: pathlib.Path) -> subprocess.CompletedProcess:
  """Runs README block `name` verbatim (but /tmp/ -> readme_tmp); asserts it exits 0."""
  _, command = without_pip_prefix(block(name))
  command = command.replace("/tmp/", f"{readme_tmp}/")
  result = subprocess.run(
      ["bash", "-e", "-c", command],
      cwd=ROOT,
      env=user_env(readme_tmp),
      capture_output=True,
      text=True,
      timeout=TIMEOUT_S,
  )
  log = f"$ {command}\n--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
  assert result.returncode == 0, log
  result.log = log
  return result


def assert_quiet(result: subprocess.CompletedProcess) -> None:
  noisy = [l for l in (result.stdout + result.stderr).splitlines() if any(b in l for b in BANNER)]
  assert not noisy, f"TensorFlow's banner was printed:\n{noisy}\n{result.log}"


def eval_metrics(model_dir: pathlib.Path) -> list[dict]:
  lines = (model_dir / "eval_metrics.jsonl").read_text(encoding="utf-8").splitlines()
  return [json.loads(line) for line in lines if line.strip()]


def gin_value(command: str, name: str) -> str:
  match = re.search(rf"--gin\.{re.escape(name)}=(\S+)", command)
  assert match, f"the command sets no --gin.{name}"
  return match.group(1)


# --- the blocks as a set (fast) -------------------------------------------------------------
def test_every_bash_block_is_checked():
  blocks = bash_blocks()
  for text in blocks:
    names = claimed(text)
    assert len(names) == 1, (
        f"README.md's ```bash block\n{text}\nis claimed by {names or 'no entry'} of BLOCKS in "
        f"{pathlib.Path(__file__).name}: give it one entry and a test that runs and checks it "
        f"(or, if it cannot run, start it with '{SKIP_MARKER}, <why>')."
    )
  for name in BLOCKS:
    block(name)  # each entry claims exactly one block


def test_blocks_not_run_say_why():
  for text in bash_blocks():
    first = text.splitlines()[0]
    if first.startswith(SKIP_MARKER):
      assert first[len(SKIP_MARKER) :].strip(" ,:;"), f"{first!r}: say why it is not run"
  assert [name for name in BLOCKS if block(name).startswith(SKIP_MARKER)] == ["test_suite"]


def test_pip_prefixes_name_extras_that_exist(monkeypatch):
  captured = {}
  monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
  monkeypatch.chdir(ROOT)
  runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
  extras = captured["extras_require"]
  named = []
  for text in bash_blocks():
    lines = [l for l in text.splitlines() if not l.startswith(SKIP_MARKER)]
    wanted, rest = without_pip_prefix("\n".join(lines))
    assert (
        "pip install" not in rest
    ), f'only a leading pip install -e ".[...]" && is allowed:\n{text}'
    named += wanted
  assert named, "the README installs the project somewhere"
  assert set(named) <= set(extras), f"extras {set(named) - set(extras)} are not in setup.py"


def test_readme_tmp_paths_are_the_only_rewrite():
  """Every absolute path a run block writes is under /tmp/, so the rewrite isolates it."""
  for name in BLOCKS:
    for path in re.findall(r"(?<![\w.])/[\w./-]+", block(name)):
      assert path.startswith("/tmp/"), f"BLOCKS[{name!r}] uses {path}, outside /tmp/"


# --- fast blocks ----------------------------------------------------------------------------
def test_vocabulary_block(readme_tmp):
  command = block("vocabulary")
  result = run_block("vocabulary", readme_tmp)
  assert_quiet(result)
  model = readme_tmp / "my_spm.model"
  assert str(model) in result.stdout, result.log
  import sentencepiece  # pylint: disable=g-import-not-at-top

  spm = sentencepiece.SentencePieceProcessor(model_file=str(model))
  assert spm.get_piece_size() == int(re.search(r"--vocab_size (\d+)", command).group(1))
  for piece in ("<2de>", "<2fr>", "[NLU]", "[NLG]", "[S2S]"):
    assert piece in spm.encode(f"{piece} In the beginning", out_type=str), piece


# --- training runs (slow) -------------------------------------------------------------------
@pytest.fixture(scope="module")
def quickstart(readme_tmp) -> tuple[subprocess.CompletedProcess, pathlib.Path]:
  """The quickstart block, run once: eval and infer read its MODEL_DIR."""
  return run_block("quickstart", readme_tmp), readme_tmp / "podzoo_quickstart"


@pytest.mark.slow
def test_quickstart_block(quickstart):
  result, model_dir = quickstart
  assert_quiet(result)
  steps = int(
      re.search(
          r"^TRAIN_STEPS = (\d+)", (ROOT / "gin/runs/quickstart.gin").read_text(), re.M
      ).group(1)
  )
  assert (model_dir / "checkpoints" / str(steps)).is_dir(), result.log
  assert (model_dir / "config.gin").is_file()
  out = result.stdout
  baselines = re.findall(
      r"eval cross_entropy ([\d.]+) nats/token vs unigram_entropy_nats ([\d.]+)", out
  )
  assert baselines, result.log
  cross_entropy, unigram = map(float, baselines[-1])
  assert cross_entropy < unigram, result.log
  assert eval_metrics(model_dir)[-1]["step"] == steps
  assert out.count("PROMPT: ") == 3 and out.count("  greedy -> ") == 3, result.log
  assert out.count(" sampled -> ") == 3, result.log
  summary = out[out.index("Done; last train loss") :]
  assert f"MODEL_DIR {model_dir}" in summary and "checkpoints/ (steps " in summary, result.log


@pytest.mark.slow
def test_eval_block(quickstart, readme_tmp):
  _, model_dir = quickstart
  result = run_block("eval", readme_tmp)
  assert_quiet(result)
  step = eval_metrics(model_dir)[-1]["step"]
  assert f"Evaluated checkpoint step {step} of {model_dir}" in result.stdout, result.log
  assert re.search(r"^cross_entropy\s+\d+\.\d+$", result.stdout, re.M), result.log


@pytest.mark.slow
def test_infer_block(quickstart, readme_tmp):
  _, model_dir = quickstart
  result = run_block("infer", readme_tmp)
  assert_quiet(result)
  prompts = (readme_tmp / "prompts.txt").read_text(encoding="utf-8").splitlines()
  (output,) = (model_dir / "inference").glob("predict-*.jsonl")
  records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
  assert [r["input"] for r in records] == prompts
  assert all(r["output"].strip() for r in records), records
  assert f"Wrote {len(prompts)} predict results to {output}" in result.stdout, result.log
  assert f"Result 1 of {len(prompts)}:" in result.stdout, result.log


@pytest.mark.slow
def test_pod_job_on_cpu_block(readme_tmp):
  command = block("pod_job_on_cpu")
  result = run_block("pod_job_on_cpu", readme_tmp)
  assert_quiet(result)
  model_dir = readme_tmp / "podzoo_small"
  steps = gin_value(command, "TRAIN_STEPS")
  assert (model_dir / "checkpoints" / steps).is_dir(), result.log
  mesh = gin_value(command, "Partitioner.mesh_shape").strip("\"'")
  assert f"Partitioner.mesh_shape = {mesh}" in (model_dir / "config.gin").read_text()
  # The README says what this run warns about.
  assert "WARNING: The learning rate warms up over 10000 steps" in result.stderr, result.log
  assert re.search(r"WARNING: Replicating .*kv_heads.*tensor", result.stderr), result.log


def unigram_entropy_of_validation_targets(task_name: str) -> float:
  """Nats/token of the unigram distribution of the task's tokenized validation targets (EOS
  included), fit on those same tokens: no unigram model scores them lower."""
  import seqio  # pylint: disable=g-import-not-at-top

  task = seqio.get_mixture_or_task(task_name)
  eos = task.output_features["targets"].vocabulary.eos_id
  rows = list(
      task.get_dataset(sequence_length=None, split="validation", shuffle=False).as_numpy_iterator()
  )
  assert rows and all(row["targets"][-1] == eos for row in rows)  # EOS counted
  counts = np.bincount(np.concatenate([row["targets"] for row in rows]))
  p = counts[counts > 0] / counts.sum()
  return float(-(p * np.log(p)).sum())


@pytest.mark.slow
def test_walkthrough_block_learns(readme_tmp):
  command = block("walkthrough")
  result = run_block("walkthrough", readme_tmp)
  assert_quiet(result)
  model_dir = readme_tmp / "my_run"
  steps = int(gin_value(command, "TRAIN_STEPS"))
  assert (model_dir / "checkpoints" / str(steps)).is_dir(), result.log
  final = eval_metrics(model_dir)[-1]
  assert final["step"] == steps, result.log

  # The README's my_tasks.py registers my_task here too (the same code, tested identical).
  from tasks import quickstart as quickstart_lib  # pylint: disable=g-import-not-at-top
  from tests.tasks import my_tasks_example  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import

  unigram = unigram_entropy_of_validation_targets("my_task")
  assert unigram == pytest.approx(quickstart_lib.unigram_entropy_nats("my_task"), abs=0.05)
  print(
      f"walkthrough: eval cross entropy {final['cross_entropy']:.4f} at step {steps} vs "
      f"unigram entropy {unigram:.4f} nats/token"
  )
  assert final["cross_entropy"] < unigram, (
      f"The walkthrough did not learn: eval cross entropy {final['cross_entropy']:.4f} nats/token "
      f"at step {steps} is not below the unigram entropy of my_task's text, {unigram:.4f}.\n"
      + result.log
  )
