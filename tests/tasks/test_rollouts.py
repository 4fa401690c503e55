"""Rollout files: every bad line named, and the rollout task's prefix_scorer batches against a
plain-numpy recomputation of the prefix-LM layout and its rewards."""

import json
import math

import numpy as np
import pytest
import seqio

from model_zoo import feature_converters
from model_zoo.errors import MissingFileError
from tasks import pipeline
from tasks.controlled import feature_converter, rollouts

BYTES = seqio.ByteVocabulary()  # id = byte + 3; 0 pad, 1 EOS
EOS = 1
TASK = "test_rollouts_task"
LENGTHS = {"inputs": 16, "targets": 8}
ROLLOUTS = [  # (prompt, continuation, reward)
    ("Sag hallo:", "Hallo!", -0.25),
    ("Count:", "1 2 3", 1.5),
    ("Empty:", "", -3.0),
]


def byte_ids(text: str) -> list[int]:
  return [b + 3 for b in text.encode("utf-8")]


def write_lines(path, lines) -> str:
  path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
  return str(path)


def line(prompt: str, output: str, rewards: dict) -> str:
  return json.dumps({"input": prompt, "output": output, "num_tokens": 3, "rewards": rewards})


@pytest.fixture
def rollout_file(tmp_path):
  return write_lines(
      tmp_path / "rollouts.jsonl",
      [line(p, o, {"length": r, "langid:de": -1.0}) for p, o, r in ROLLOUTS],
  )


@pytest.fixture
def task_name():
  yield TASK
  if TASK in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(TASK)


def test_read_rollouts_picks_the_named_reward(rollout_file, tmp_path):
  assert rollouts.read_rollouts(rollout_file, "length") == ROLLOUTS
  assert [r for _, _, r in rollouts.read_rollouts(rollout_file, "langid:de")] == [-1.0] * 3
  with_blank = write_lines(tmp_path / "blank.jsonl", [line("a", "b", {"x": 1}), "", "  "])
  assert rollouts.read_rollouts(with_blank, "x") == [("a", "b", 1.0)]


GOOD = line("p", "o", {"length": -1.0})
BAD_LINES = {
    "not JSON": ('{"input": "p",', "is not JSON"),
    "array": ('["p", "o"]', "a JSON list, not an object"),
    "no input": (
        json.dumps({"output": "o", "rewards": {"length": 0}}),
        "string 'input' but has none",
    ),
    "output not str": (
        json.dumps({"input": "p", "output": 3, "rewards": {"length": 0}}),
        "string 'output' but has int",
    ),
    "no rewards": (json.dumps({"input": "p", "output": "o"}), "no 'rewards' object"),
    "other reward": (
        line("p", "o", {"langid:de": -1.0, "chars": 2}),
        "no reward 'length'; its rewards are ['chars', 'langid:de']",
    ),
    "NaN": (line("p", "o", {"length": float("nan")}), "'length' is nan, not a finite number"),
    "bool": (line("p", "o", {"length": True}), "'length' is True, not a finite number"),
    "string": (line("p", "o", {"length": "-1"}), "'length' is '-1', not a finite number"),
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_each_bad_line_is_named(case, tmp_path):
  bad, message = BAD_LINES[case]
  path = write_lines(tmp_path / "r.jsonl", [GOOD, "", bad, GOOD])  # the bad one is line 3
  with pytest.raises(pipeline.DataError) as e:
    rollouts.read_rollouts(path, "length")
  assert f"{path} line 3" in str(e.value) and message in str(e.value)


def test_a_missing_file_is_named(tmp_path):
  with pytest.raises(MissingFileError, match="nowhere.jsonl"):
    rollouts.read_rollouts(tmp_path / "nowhere.jsonl", "length")


def expected_row(prompt: str, output: str, reward: float, length: int) -> dict:
  """SeqIO's prefix-LM layout by hand: prompt (no EOS) then continuation + EOS, padded."""
  inputs, targets = byte_ids(prompt), byte_ids(output) + [EOS]
  sequence = np.zeros(length, np.int32)
  sequence[: len(inputs) + len(targets)] = inputs + targets
  loss = np.zeros(length, np.int32)
  loss[len(inputs) : len(inputs) + len(targets)] = 1
  causal = np.zeros(length, np.int32)
  causal[: len(inputs) + 1] = 1  # BOS and the prompt
  return {
      "decoder_target_tokens": sequence,
      "decoder_input_tokens": np.concatenate([[0], sequence[:-1]]).astype(np.int32),
      "decoder_loss_weights": loss,
      "decoder_causal_attention": causal,
      "decoder_rewards": np.where(sequence > 0, reward, 0.0).astype(np.float32),
  }


def batches(**kwargs) -> list[dict]:
  args = dict(feature_converter="prefix_scorer", pack=False, shuffle=False, num_epochs=1)
  return list(pipeline.get_batch_iterator(TASK, LENGTHS, "train", 3, **{**args, **kwargs}))


def test_prefix_scorer_batch_is_the_prefix_lm_layout_with_rewards(rollout_file, task_name):
  rollouts.register_rollout_task(task_name, rollout_file, "length", BYTES)
  pipeline.check_features(task_name, "prefix_scorer")
  [batch] = batches()
  length = sum(LENGTHS.values())
  shapes = pipeline.model_feature_shapes("prefix_scorer", LENGTHS, 3, pack=False)
  assert {k: v.shape for k, v in batch.items()} == shapes
  assert set(feature_converters.PrefixScorerFeatureConverter.required_features) <= set(batch)
  for i, (prompt, output, reward) in enumerate(ROLLOUTS):
    for key, want in expected_row(prompt, output, reward, length).items():
      assert batch[key].dtype == want.dtype, key
      np.testing.assert_array_equal(batch[key][i], want, err_msg=f"row {i} {key}")
  # The model side reads the prompt and continuation back from a row.
  row = {k: v[0] for k, v in batch.items()}
  prompt, target = feature_converters.PrefixScorerFeatureConverter.row_tokens(row)
  assert (prompt, target) == (byte_ids("Sag hallo:"), byte_ids("Hallo!") + [EOS])


def test_rewards_stay_with_their_rows_when_shuffled(tmp_path, task_name):
  texts = [f"t{i}" for i in range(39)]  # 13 batches of 3
  path = write_lines(
      tmp_path / "many.jsonl", [line("p", t, {"r": float(i)}) for i, t in enumerate(texts)]
  )
  rollouts.register_rollout_task(task_name, path, "r", BYTES, add_eos=False)
  seen = []
  for batch in batches(shuffle=True, seed=None):
    targets, weights = batch["decoder_target_tokens"], batch["decoder_loss_weights"]
    for row_targets, row_weights, reward in zip(targets, weights, batch["decoder_rewards"]):
      seen.append(BYTES.decode(row_targets[row_weights > 0].tolist()))  # no EOS: add_eos=False
      assert reward[0] == texts.index(seen[-1])
  assert sorted(seen) == sorted(texts) and seen != texts  # every row, shuffled


def test_registering_again_replaces_the_task(rollout_file, tmp_path, task_name):
  rollouts.register_rollout_task(task_name, rollout_file, "length", BYTES)
  other = write_lines(tmp_path / "other.jsonl", [line("Q", "A", {"length": 0.5})] * 3)
  rollouts.register_rollout_task(task_name, other, "length", BYTES)
  [batch] = batches()
  np.testing.assert_array_equal(batch["decoder_target_tokens"][:, :3], [byte_ids("QA") + [EOS]] * 3)
  assert math.isclose(batch["decoder_rewards"].max(), 0.5)


def test_a_bad_or_empty_file_fails_at_registration(tmp_path, task_name):
  bad = write_lines(tmp_path / "bad.jsonl", [GOOD, line("p", "o", {"chars": 1})])
  with pytest.raises(pipeline.DataError, match=r"bad.jsonl line 2 has no reward 'length'"):
    rollouts.register_rollout_task(task_name, bad, "length", BYTES)
  empty = write_lines(tmp_path / "empty.jsonl", [])
  with pytest.raises(pipeline.DataError, match="has no rollouts"):
    rollouts.register_rollout_task(task_name, empty, "length", BYTES)
  assert task_name not in seqio.TaskRegistry.names()


def test_packing_is_refused_with_the_setting_to_change(rollout_file, task_name):
  rollouts.register_rollout_task(task_name, rollout_file, "length", BYTES)
  for refused in (
      lambda: feature_converter.PrefixScorerFeatureConverter(pack=True),
      lambda: pipeline.model_feature_shapes("prefix_scorer", LENGTHS, 3, pack=True),
      lambda: batches(pack=True),
  ):
    with pytest.raises(pipeline.DataError, match=r"--gin.train/DatasetConfig.pack=False"):
      refused()


def test_a_task_without_rewards_is_refused_by_name():
  with pytest.raises(pipeline.DataError, match=r"'kjv_genesis_lm'.*lacks \['inputs', 'rewards'\]"):
    pipeline.check_features("kjv_genesis_lm", "prefix_scorer")
