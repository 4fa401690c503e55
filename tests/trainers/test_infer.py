"""`python -m trainers.infer` as users run it: predict, score and beam search on the quickstart.

Runs main() in-process (as test_cli.py does) against a quickstart model trained for two
steps, and checks every score it writes against model.score_batch computed here from
the checkpoint, independently of trainers/infer.py.
"""

import contextlib
import dataclasses
import functools
import io
import json
import os

import flax.linen as nn
import gin
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from model_zoo import dense, feature_converters, models
from tasks import quickstart
from tests.trainers import helpers
from trainers import cli, gin_utils, infer, infer_outputs, train

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LENGTH = 24  # infer.max_length in these tests
LONG_PROMPT = " ".join(["And God said, Let there be light"] * 6)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("quickstart")
  code = train.main(
      [
          "--gin_file=gin/runs/quickstart.gin",
          f"--gin.MODEL_DIR='{path}'",
          "--gin.TRAIN_STEPS=2",
          "--gin.BATCH_SIZE=8",
          '--gin.TASK_FEATURE_LENGTHS={"targets": 32}',
          "--gin.train.eval_dataset_cfg=None",
          "--gin.train.predict_prompts=[]",
          "--gin.train.eval_baselines=None",
      ]
  )
  assert code == 0
  return path


def infer_flags(model_dir, *extra):
  return [
      "--gin_file=gin/runs/quickstart.gin",
      "--gin_file=gin/runs/infer.gin",
      f"--gin.MODEL_DIR='{model_dir}'",
      "--gin.BATCH_SIZE=8",
      f"--gin.infer.max_length={LENGTH}",
      *extra,
  ]


def run_infer(model_dir, *extra) -> tuple[int, str]:
  """(exit code, stdout + stderr) of one in-process run."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    code = infer.main(infer_flags(model_dir, *extra))
  return code, out.getvalue()


def read_jsonl(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
  path.write_text(f"In the beginning God\n\nAnd Abraham said\n{LONG_PROMPT}\n", encoding="utf-8")
  return path


@pytest.fixture(scope="module")
def greedy(model_dir, prompts_file):
  """(log, records) of greedy predictions of the prompts file, the long prompt truncated."""
  code, log = run_infer(
      model_dir, f"--gin.infer.input_file='{prompts_file}'", "--gin.infer.truncate_prompts=True"
  )
  assert code == 0, log
  return log, read_jsonl(os.path.join(model_dir, "inference", "predict-2.jsonl"))


@pytest.fixture(scope="module")
def checkpoint(model_dir):
  """(model, params, vocabulary) of the quickstart run, built here from gin and Orbax."""
  gin.clear_config()
  cli.import_configurables()
  gin_utils.parse_gin(
      gin_utils.parse_flags(
          ["--gin_file=gin/runs/quickstart.gin", f"--gin.MODEL_DIR='{model_dir}'"]
      )
  )
  model = models.DecoderOnlyModel()
  gin.clear_config()
  state_dir = os.path.join(model_dir, "checkpoints", "2", "state")
  params = ocp.StandardCheckpointer().restore(state_dir)["params"]
  return model, params, quickstart.quickstart_vocabulary()


def score_directly(model, params, prompt_ids, target_ids, length=LENGTH) -> float:
  """log p(target | prompt) by one full forward pass over [prompt, target], causal as trained."""
  sequence = np.zeros((1, length), np.int32)
  sequence[0, : len(prompt_ids) + len(target_ids)] = list(prompt_ids) + list(target_ids)
  weights = np.zeros_like(sequence)
  weights[0, len(prompt_ids) : len(prompt_ids) + len(target_ids)] = 1
  inputs = np.concatenate([np.zeros((1, 1), np.int32), sequence[:, :-1]], axis=1)
  batch = {
      "decoder_input_tokens": inputs,
      "decoder_target_tokens": sequence,
      "decoder_loss_weights": weights,
  }
  return float(_jitted(model.score_batch)(params, batch)[0])


@functools.cache
def _jitted(method):
  return jax.jit(method)


def greedy_tokens(model, params, prompt_ids) -> list[int]:
  """The greedy continuation of one prompt (EOS kept), decoded here without trainers.infer."""
  batch = feature_converters.DecoderFeatureConverter.prompt_batch([prompt_ids], 1, LENGTH)
  tokens, _ = _jitted(model.predict_batch)(params, batch)
  return [int(t) for t in np.asarray(tokens)[0] if t > 0]


def test_predict_writes_one_line_per_prompt_scored_as_score_batch_scores_it(greedy, checkpoint):
  log, records = greedy
  model, params, vocab = checkpoint
  prompts = ["In the beginning God", "And Abraham said", LONG_PROMPT]  # the blank line is skipped
  assert [r["input"] for r in records] == prompts
  assert "infer: 3/3 examples" in log and "examples/s" in log and "Wrote 3 predict results" in log
  for prompt, record in zip(prompts, records):
    ids = vocab.encode(prompt)[-(LENGTH - 1) :]  # truncation keeps the last tokens
    tokens = greedy_tokens(model, params, ids)
    assert record["output"] == vocab.decode([t for t in tokens if t != model.eos_id])
    assert record["output"]  # decoded text, not ids
    assert record["score"] == pytest.approx(
        score_directly(model, params, ids, tokens), rel=1e-4, abs=1e-3
    )


def test_truncation_says_so_and_too_long_prompts_fail_without_it(greedy, model_dir, prompts_file):
  log, _ = greedy
  size = len(quickstart.quickstart_vocabulary().encode(LONG_PROMPT))
  assert (
      f"Truncated the prompt of {prompts_file} line 4 from {size} to its last {LENGTH - 1} tokens"
      in log
  )
  code, log = run_infer(model_dir, f"--gin.infer.input_file='{prompts_file}'")
  assert code == 1 and "Traceback" not in log
  assert f"{prompts_file} line 4 has {size} tokens but infer.max_length={LENGTH}" in log
  assert "--gin.infer.truncate_prompts=True" in log and "raise --gin.infer.max_length" in log


def test_score_mode_equals_score_batch(model_dir, checkpoint, tmp_path):
  model, params, vocab = checkpoint
  pairs = [
      ("In the beginning", " God created the heaven"),
      ("", "And Joseph"),
      ("And Abraham said", " unto"),
  ]
  path = tmp_path / "pairs.jsonl"
  path.write_text(
      "".join(json.dumps({"input": i, "target": t}) + "\n" for i, t in pairs), encoding="utf-8"
  )
  code, log = run_infer(
      model_dir,
      "--gin.infer.mode='score'",
      f"--gin.infer.input_file='{path}'",
      f"--gin.infer.output_dir='{tmp_path}'",
  )
  assert code == 0, log
  records = read_jsonl(tmp_path / "score-2.jsonl")
  assert [(r["input"], r["target"]) for r in records] == pairs
  for (prompt, target), record in zip(pairs, records):
    expected = score_directly(
        model, params, vocab.encode(prompt), vocab.encode(target) + [vocab.eos_id]
    )
    assert record["score"] == pytest.approx(expected, rel=1e-4, abs=1e-3)


def test_score_mode_reads_the_task_split_in_order(model_dir, checkpoint, tmp_path):
  model, params, vocab = checkpoint
  code, log = run_infer(
      model_dir,
      "--gin.infer.mode='score'",
      "--gin.infer.max_length=None",
      "--gin.infer.max_examples=3",
      f"--gin.infer.output_dir='{tmp_path}'",
  )
  assert code == 0, log
  assert "max_length 128" in log  # TASK_FEATURE_LENGTHS of the quickstart
  records = read_jsonl(tmp_path / "score-2.jsonl")
  verses = quickstart.split_lines("validation")[:3]  # unshuffled: the split's first verses
  assert [(r["input"], r["target"]) for r in records] == [("", verse) for verse in verses]
  for verse, record in zip(verses, records):
    expected = score_directly(model, params, [], vocab.encode(verse) + [vocab.eos_id], length=128)
    assert record["score"] == pytest.approx(expected, rel=1e-4, abs=1e-3)


def test_beam_search_from_gin_scores_at_least_greedy(model_dir, prompts_file, greedy, tmp_path):
  _, greedy_records = greedy
  code, log = run_infer(
      model_dir,
      f"--gin.infer.input_file='{prompts_file}'",
      "--gin.infer.truncate_prompts=True",
      "--gin.infer.decoder=@BeamSearch()",
      "--gin.BeamSearch.alpha=0.0",
      "--gin.infer.mode='predict_with_aux'",
      f"--gin.infer.output_dir='{tmp_path}'",
  )
  assert code == 0, log
  assert "BeamSearch(beam_size=4, alpha=0.0" in log
  records = read_jsonl(tmp_path / "predict_with_aux-2.jsonl")
  assert len(records) == len(greedy_records) == 3
  for beam, best_first in zip(records, greedy_records):
    assert beam["score"] >= best_first["score"] - 1e-4
    scores = beam["aux"]["scores"]
    assert (
        len(scores) == 4 and scores == sorted(scores, reverse=True) and scores[0] == beam["score"]
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            [
                "--gin.infer.decoder=@BeamSearch()",
                "--gin.BeamSearch.beam_size=4",
                "--gin.infer.max_decode_rows=16",
            ],
            "infer.batch_size=8 x 4 decodes per example",
        ),
        (
            ["--gin.infer.decoder=@Sampling()", "--gin.Sampling.top_p=0.0"],
            "Sampling.top_p=0.0 must be in (0, 1]",
        ),
        (["--gin.infer.mode='score'"], "infer.mode='score' needs targets"),
        (
            ["--gin.infer.checkpoint_step=7", "--gin.infer.truncate_prompts=True"],
            "No checkpoint at step 7",
        ),
        (["--gin.infer.mode='guess'"], "infer.mode='guess' is not one of"),
    ],
)
def test_bad_settings_exit_1_naming_the_fix(model_dir, prompts_file, extra, message):
  code, log = run_infer(model_dir, f"--gin.infer.input_file='{prompts_file}'", *extra)
  assert code == 1, log
  assert message in log and "Traceback" not in log
  if "max_decode_rows" in extra[-1]:  # suggests the largest batch that fits
    assert "lower --gin.infer.batch_size to 4" in log and "raise --gin.infer.max_decode_rows" in log


def test_empty_prompt_file_exits_1(model_dir, tmp_path):
  path = tmp_path / "empty.txt"
  path.write_text("\n  \n", encoding="utf-8")
  code, log = run_infer(model_dir, f"--gin.infer.input_file='{path}'")
  assert code == 1 and "holds no examples" in log and "one prompt per line" in log


def test_missing_checkpoint_exits_1_naming_model_dir(prompts_file, tmp_path):
  empty_dir = tmp_path / "no_run"
  code, log = run_infer(
      empty_dir, f"--gin.infer.input_file='{prompts_file}'", "--gin.infer.truncate_prompts=True"
  )
  assert code == 1 and f"No checkpoint in {empty_dir}" in log and "--gin.MODEL_DIR" in log
  assert not empty_dir.exists()  # a mistyped MODEL_DIR leaves nothing behind


def test_encoder_decoder_predictions_score_as_their_score_batch():
  """File prompts become encoder inputs; a prediction's score is its targets' score_batch."""
  model = models.EncoderDecoderModel(
      dense.EncoderDecoder(
          dataclasses.replace(helpers.TINY, tie_embeddings=False, position_encoding="relative_bias")
      )
  )
  prompts = [infer.Example(0, [5, 9, 3, 1], [], "a"), infer.Example(1, [7, 1], [], "b")]
  batch = infer.model_batch(model, "predict", prompts, 2, 12)
  shapes = nn.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), batch))  # no init to compile
  rs = np.random.RandomState(0)
  params = jax.tree.map(lambda s: rs.normal(0, 0.3, s.shape).astype(s.dtype), shapes)
  tokens, scores = jax.jit(model.predict_batch)(params, batch)
  scored = [
      dataclasses.replace(e, target=[int(t) for t in row if t > 0])
      for e, row in zip(prompts, np.asarray(tokens))
  ]
  expected = jax.jit(model.score_batch)(params, infer.model_batch(model, "score", scored, 2, 12))
  np.testing.assert_allclose(np.asarray(scores), np.asarray(expected), rtol=1e-4, atol=1e-4)


def test_an_existing_output_is_refused_before_restoring_unless_overwrite(
    model_dir, prompts_file, tmp_path
):
  flags = (
      f"--gin.infer.input_file='{prompts_file}'",
      "--gin.infer.truncate_prompts=True",
      f"--gin.infer.output_dir='{tmp_path}'",
  )
  code, log = run_infer(model_dir, *flags)
  assert code == 0, log
  path = tmp_path / "predict-2.jsonl"
  first = path.read_bytes()
  code, log = run_infer(model_dir, *flags)
  errors = [line for line in log.splitlines() if line.startswith("ERROR: ")]
  assert code == 1 and len(errors) == 1, log
  assert f"{path} already exists" in errors[0]
  assert "--gin.infer.overwrite=True" in errors[0] and "--gin.infer.output_dir=" in errors[0]
  assert "Restored checkpoint" not in log and "Traceback" not in log
  assert path.read_bytes() == first
  path.write_text("stale\n", encoding="utf-8")
  code, log = run_infer(model_dir, *flags, "--gin.infer.overwrite=True")
  assert code == 0, log
  assert path.read_bytes() == first


def test_an_unwritable_output_dir_exits_1_before_decoding(model_dir, prompts_file, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("", encoding="utf-8")
  output_dir = blocker / "out"  # under a regular file: fails even as root
  code, log = run_infer(
      model_dir,
      f"--gin.infer.input_file='{prompts_file}'",
      "--gin.infer.truncate_prompts=True",
      f"--gin.infer.output_dir='{output_dir}'",
  )
  errors = [line for line in log.splitlines() if line.startswith("ERROR: ")]
  assert code == 1 and len(errors) == 1, log
  assert str(output_dir) in errors[0] and "infer.output_dir" in errors[0]
  assert "infer: " not in log and "Traceback" not in log
  assert "Restored checkpoint" not in log  # found before restoring, too
  assert blocker.read_text(encoding="utf-8") == ""


def test_predict_prints_its_first_results_then_the_count_and_file(greedy, model_dir):
  log, records = greedy
  shown = infer_outputs.SHOWN_CHARS
  assert len(LONG_PROMPT) > shown  # the third input is cut short
  for record in records:
    assert f"input:  {json.dumps(record['input'][:shown], ensure_ascii=False)}" in log
    assert f"output: {json.dumps(record['output'][:shown], ensure_ascii=False)}" in log
    assert f"score:  {record['score']:.4f}" in log
  assert f"... ({len(LONG_PROMPT)} characters)" in log
  path = os.path.join(model_dir, "inference", "predict-2.jsonl")
  assert log.rstrip().splitlines()[-1] == f"Wrote 3 predict results to {path}"


def test_score_prints_the_first_3_results_then_the_count_and_file(model_dir, tmp_path, capfd):
  pairs = [("In the beginning", " God"), ("", "And Joseph"), ("Abraham said", " unto"), ("a", "b")]
  path = tmp_path / "pairs.jsonl"
  path.write_text(
      "".join(json.dumps({"input": i, "target": t}) + "\n" for i, t in pairs), encoding="utf-8"
  )
  capfd.readouterr()
  code = infer.main(
      infer_flags(
          model_dir,
          "--gin.infer.mode='score'",
          f"--gin.infer.input_file='{path}'",
          f"--gin.infer.output_dir='{tmp_path}'",
      )
  )
  out, err = capfd.readouterr()
  assert code == 0, out + err
  records = read_jsonl(tmp_path / "score-2.jsonl")
  lines = out.rstrip().splitlines()
  assert lines[-1] == f"Wrote 4 score results to {tmp_path / 'score-2.jsonl'}"
  for record in records[:3]:
    assert f"  input:  {json.dumps(record['input'])}" in lines
    assert f"  target: {json.dumps(record['target'])}" in lines
    assert f"  score:  {record['score']:.4f}" in lines
  assert '"a"' not in out  # only the first 3


@pytest.mark.parametrize(
    "name, content",
    [
        ("prompts.txt", b"ok line\n\xff\xfe bad\n"),
        ("pairs.jsonl", b'{"input": "ok"}\n{"input": "\xff\xfe"}\n'),
    ],
)
def test_a_file_that_is_not_utf8_exits_1_naming_the_line_before_restoring(
    model_dir, tmp_path, name, content
):
  path = tmp_path / name
  path.write_bytes(content)
  code, log = run_infer(model_dir, f"--gin.infer.input_file='{path}'")
  errors = [line for line in log.splitlines() if line.startswith("ERROR: ")]
  assert code == 1 and len(errors) == 1, log
  assert f"{path} line 2 is not UTF-8" in errors[0] and "re-encode" in errors[0]
  assert "Traceback" not in log and "Restored checkpoint" not in log
