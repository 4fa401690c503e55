"""tools.score_rollouts: predictions -> a rollout file whose token counts and rewards match the
vocabulary and the LangID model computed here directly; mistakes stop it with one line."""

import json
import math

import numpy as np
import pytest

from tasks import quickstart
from tasks.controlled import rollouts
from tasks.langid import train as langid_train
from tasks.parallel import corpus
from tools import score_rollouts

ROOM = 12
GERMAN = corpus.monolingual("de", "validation")[:2]
PREDICTIONS = [
    {
        "input": "In the beginning",
        "output": GERMAN[0],
        "score": -1.0,
        "outputs": [GERMAN[0], "God created the heaven and the earth and " * 3, ""],
        "scores": [-1.0, -2.0, -3.0],
    },
    {"input": "And God said", "target": "Let there be light", "output": GERMAN[1], "score": -2.0},
]
ROLLOUTS = [  # (prompt, continuation) the tool must write, in order
    ("In the beginning", GERMAN[0]),
    ("In the beginning", "God created the heaven and the earth and " * 3),
    ("In the beginning", ""),
    ("And God said", GERMAN[1]),
]


def write_jsonl(path, records) -> str:
  path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
  return str(path)


def run(tmp_path, *extra, predictions=None, output="rollouts.jsonl") -> tuple[int, str]:
  predictions = predictions or write_jsonl(tmp_path / "predictions.jsonl", PREDICTIONS)
  args = ["--predictions", predictions, "--rewards", "length,langid:de"]
  args += ["--task", quickstart.TASK_NAME, "--max_new_tokens", str(ROOM)]
  return score_rollouts.main([*args, "--output", str(tmp_path / output), *extra])


def test_writes_every_decode_with_its_token_count_and_rewards(tmp_path, capsys):
  assert run(tmp_path) == 0
  written = [json.loads(line) for line in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
  assert [(r["input"], r["output"]) for r in written] == ROLLOUTS
  vocabulary = quickstart.quickstart_vocabulary()
  counts = [min(len(vocabulary.tokenizer.encode(o)) + 1, ROOM) for _, o in ROLLOUTS]
  assert [r["num_tokens"] for r in written] == counts
  assert counts[1] == ROOM and counts[2] == 1  # capped at the room; EOS alone
  length = [math.log(n / ROOM) for n in counts]
  p_de = langid_train.load_or_train().probabilities([o for _, o in ROLLOUTS])
  langid = [math.log(max(p, 1e-6)) for p in p_de[:, corpus.LANGUAGES.index("de")]]
  langid[2] = math.log(1e-6)  # the empty decode
  np.testing.assert_allclose([r["rewards"]["length"] for r in written], length, rtol=1e-12)
  np.testing.assert_allclose([r["rewards"]["langid:de"] for r in written], langid, rtol=1e-6)
  assert all(set(r) == {"input", "output", "num_tokens", "rewards"} for r in written)
  out = capsys.readouterr().out
  for name, values in (("length", length), ("langid:de", langid)):
    row = f"{np.mean(values):.4f}  {min(values):>10.4f}  {max(values):>10.4f}"
    assert any(line.startswith(name) and line.endswith(row) for line in out.splitlines()), out
  assert "Wrote 4 rollouts" in out
  # The rollout task reads what the tool wrote.
  read = rollouts.read_rollouts(tmp_path / "rollouts.jsonl", "length")
  assert read == [(p, o, v) for (p, o), v in zip(ROLLOUTS, length)]


def test_an_existing_output_is_refused_before_any_work(tmp_path, capsys):
  (tmp_path / "rollouts.jsonl").write_text("earlier\n")
  assert run(tmp_path, predictions=str(tmp_path / "missing.jsonl")) == 1
  err = capsys.readouterr().err
  assert "rollouts.jsonl already exists; pass --overwrite" in err and "missing" not in err
  assert (tmp_path / "rollouts.jsonl").read_text() == "earlier\n"
  assert run(tmp_path, "--overwrite") == 0
  assert len((tmp_path / "rollouts.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "predictions.jsonl line 2 is not JSON"),
        (json.dumps({"input": "p"}), "predictions.jsonl line 2 needs a string 'output'"),
        (
            json.dumps({"input": "p", "output": "a", "outputs": ["b", "c"]}),
            "line 2: its 'output' is not one of its 'outputs'",
        ),
        (json.dumps({"input": "p", "output": "a", "outputs": "a"}), "line 2: 'outputs' must be"),
    ],
)
def test_a_bad_prediction_line_is_named(tmp_path, capsys, bad, message):
  path = tmp_path / "predictions.jsonl"
  path.write_text(json.dumps(PREDICTIONS[1]) + "\n" + bad + "\n")
  assert run(tmp_path, predictions=str(path)) == 1
  err = capsys.readouterr().err
  assert err.startswith("ERROR: ") and message in err and "Traceback" not in err
  assert not (tmp_path / "rollouts.jsonl").exists()


def test_bad_settings_are_named(tmp_path, capsys):
  for extra, message in (
      (["--rewards", "length,lenght"], "no reward named 'lenght'"),
      (["--rewards", "langid:xx"], "langid:xx"),
      (["--max_new_tokens", "0"], "--max_new_tokens must be >= 1"),
      (["--task", "no_such_task"], "no SeqIO task or mixture named 'no_such_task'"),
  ):
    assert run(tmp_path, *extra) == 1
    assert message in capsys.readouterr().err
  assert not (tmp_path / "rollouts.jsonl").exists()
