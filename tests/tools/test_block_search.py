"""tools/block_search: valid random blocks and mutations, the evolution (best of the sample, the
oldest member dropped, the step-time constraint) on fake objectives, the log's resume, and the
command line with the training faked (no run here trains a model)."""

import ast
import json
import pathlib
import random
import re

import pytest

from model_zoo import layer_spec
from model_zoo.errors import UserError
from tools import block_search, moe_experiment

SPACE = block_search.SearchSpace()
A = {"kind": "attention"}


def _ffn(width):
  return {"kind": "ffn", "mlp_dim": width}


def _moe(width, router, capacity_factor):
  layer = {"kind": "moe", "mlp_dim": width, "router": router, "capacity_factor": capacity_factor}
  return {**layer, "top_k": 2} if router == "top_k" else layer


TARGET = [A, _moe(320, "expert_choice", 1.0), _ffn(320), A, _moe(160, "top_k", 2.0), _ffn(480)]
SMALL_REFERENCE = [A, _ffn(320), A, _ffn(320)]


def _layer_distance(x, y):
  if x is None or y is None:
    return 3
  return sum(x.get(k) != y.get(k) for k in set(x) | set(y))


def _distance(block, target=TARGET):
  padded = max(len(block), len(target))
  pad = [None] * padded
  return sum(map(_layer_distance, (block + pad)[:padded], (target + pad)[:padded]))


def _step_time(block):
  """Attention 1; an FFN its width / 320; a MoE its width / 320 times its capacity factor."""
  seconds = 0.0
  for layer in block:
    width = layer.get("mlp_dim", 320) / 320
    if layer["kind"] == "attention":
      seconds += 1.0
    else:
      seconds += width * layer.get("capacity_factor", 1.0)  # an FFN has none
  return seconds


class Counting:
  """The fake objective: loss the distance to TARGET; counts its calls, and raises Killed on the
  call after `kill_after` (a search killed mid-way)."""

  def __init__(self, kill_after=None):
    self.calls, self.kill_after = 0, kill_after

  def __call__(self, block):
    if self.calls == self.kill_after:
      raise Killed()
    self.calls += 1
    return {"eval_loss": float(_distance(block)), "step_time_s": _step_time(block), "extra": 1}


class Killed(Exception):
  pass


def _search(log_path, objective=None, **overrides):
  kwargs = dict(
      candidates=40,
      population=6,
      sample=3,
      seed=0,
      log_path=str(log_path),
      reference_block=SMALL_REFERENCE,
      tolerance=10.0,
  )
  return block_search.search(objective or Counting(), SPACE, **{**kwargs, **overrides})


def _assert_valid(block, space=SPACE):
  assert block_search.canonical_block(block) == block  # parse_block accepts it, as logged
  assert any(layer["kind"] == layer_spec.ATTENTION for layer in block)
  assert space.min_sublayers <= len(block) <= space.max_sublayers


def test_random_blocks_and_mutations_are_valid_and_mutations_change_the_block():
  length_changes = set()
  for seed in range(400):
    rng = random.Random(seed)
    block = block_search.random_block(SPACE, rng)
    _assert_valid(block)
    child = block_search.mutate(block, SPACE, rng)
    _assert_valid(child)
    assert child != block
    length_changes.add(len(child) - len(block))
  assert length_changes == {-1, 0, 1}  # deletions, in-place changes and insertions all happen


def test_a_space_of_top_k_routers_proposes_no_expert_choice():
  space = block_search.SearchSpace(routers=("top_k",))
  routers = set()
  for seed in range(100):
    rng = random.Random(seed)
    block = block_search.mutate(block_search.random_block(space, rng), space, rng)
    routers |= {(layer.get("router"), layer.get("top_k")) for layer in block}
  assert routers == {(None, None), ("top_k", 2)}


def test_mutations_at_the_edges_of_a_small_space():
  space = block_search.SearchSpace(
      min_sublayers=1, max_sublayers=2, mlp_dims=(320,), capacity_factors=(1.0,), routers=("top_k",)
  )
  for seed in range(50):
    rng = random.Random(seed)
    grown = block_search.mutate([A], space, rng)  # a lone attention can only gain a neighbour
    assert len(grown) == 2 and A in grown
    _assert_valid(grown, space)
    child = block_search.mutate(grown, space, rng)
    _assert_valid(child, space)
    assert child != grown


def test_the_search_finds_the_target_block(tmp_path):
  target = [A, _ffn(320), A, _moe(320, "expert_choice", 1.0)]  # 1 in ~17,000 random blocks
  for seed in range(3):
    best, records = _search(
        tmp_path / f"{seed}.jsonl",
        lambda block: {"eval_loss": float(_distance(block, target)), "step_time_s": 1.0},
        candidates=150,
        population=16,
        sample=8,
        seed=seed,
    )
    assert best["block"] == target and best["eval_loss"] == 0.0


def test_a_faster_candidate_wins_over_a_better_one_that_is_too_slow(tmp_path):
  tolerance = 0.1
  best, records = _search(tmp_path / "log.jsonl", candidates=200, tolerance=tolerance)
  limit = (1 + tolerance) * _step_time(SMALL_REFERENCE)
  assert records[0]["reference"] and records[0]["block"] == SMALL_REFERENCE
  assert best["feasible"] and best["step_time_s"] <= limit
  assert all(r["feasible"] == (r["step_time_s"] <= limit) for r in records)
  candidates = records[1:]
  assert best["eval_loss"] == min(r["eval_loss"] for r in candidates if r["feasible"])
  better_but_slow = [r for r in candidates if r["eval_loss"] < best["eval_loss"]]
  assert better_but_slow and not any(r["feasible"] for r in better_but_slow)


def test_the_population_is_regularised_and_parents_are_the_best_feasible(tmp_path):
  """With the whole population as the sample, each parent is the best of the `population` latest
  candidates (feasible first): the oldest member is gone even when it was the best, and a lower
  loss does not make a too-slow member a parent."""

  def rank(record):
    return (not record["feasible"], record["eval_loss"])

  population = 5
  _, records = _search(
      tmp_path / "log.jsonl", population=population, sample=population, tolerance=0.1
  )
  candidates = records[1:]
  assert all(r["parent"] is None for r in candidates[:population])
  aged_out = slow_skipped = 0
  for i, record in enumerate(candidates[population:], population):
    window = candidates[i - population : i]
    parent = candidates[record["parent"] - 1]
    assert parent in window and rank(parent) == min(map(rank, window))
    aged_out += min(map(rank, candidates[:i])) < rank(parent)
    slow_skipped += min(r["eval_loss"] for r in window) < parent["eval_loss"]
  assert aged_out and slow_skipped  # both happened, so the test tells the bugs apart


def test_a_killed_search_resumes_without_rerunning_finished_candidates(tmp_path):
  _, uninterrupted = _search(tmp_path / "whole.jsonl")
  total = len(uninterrupted)
  for cut in (False, True):
    log = tmp_path / f"cut_{cut}.jsonl"
    with pytest.raises(Killed):
      _search(log, Counting(kill_after=17))
    if cut:  # the kill came mid-write: the cut line is ignored and its candidate evaluated again
      with open(log, "a") as f:
        f.write('{"index": 17, "block": [{"ki')
    resumed = Counting()
    _, records = _search(log, resumed)
    assert resumed.calls == total - 17
    assert records == uninterrupted
    assert [json.loads(line) for line in log.read_text().splitlines()] == uninterrupted
  again = Counting()
  assert _search(log, again)[1] == uninterrupted and again.calls == 0
  more = Counting()
  assert _search(log, more, candidates=45)[1][: len(uninterrupted)] == uninterrupted
  assert more.calls == 5  # a larger --candidates extends the search


def test_a_log_of_other_settings_is_refused(tmp_path):
  log = tmp_path / "log.jsonl"
  _search(log, candidates=10)
  with pytest.raises(
      UserError, match=rf"{re.escape(str(log))} was written with other settings \(seed: 0 there"
  ):
    _search(log, candidates=10, seed=1)
  with pytest.raises(
      UserError, match=rf"{re.escape(str(log))} was written with other settings \(reference"
  ):
    _search(log, candidates=10, reference_block=TARGET)
  lines = log.read_text().splitlines()
  changed = json.loads(lines[8])
  changed["block"] = SMALL_REFERENCE
  log.write_text("\n".join(lines[:8] + [json.dumps(changed)] + lines[9:]) + "\n")
  with pytest.raises(
      UserError, match=rf"{re.escape(str(log))} was written with other settings \(candidate 8"
  ):
    _search(log, candidates=10)
  log.write_text("\n".join(lines[:3] + ["{not json"] + lines[4:]) + "\n")
  with pytest.raises(UserError, match=rf"{re.escape(str(log))}: line 4 is not a JSON record"):
    _search(log, candidates=10)


def test_bad_search_settings_name_the_flag(tmp_path):
  with pytest.raises(UserError, match=r"--sample=4 must be between 1 and --population=3"):
    _search(tmp_path / "log.jsonl", population=3, sample=4)
  with pytest.raises(UserError, match=r"reference_block\[1\]: unknown layer kind 'conv'"):
    _search(tmp_path / "log.jsonl", reference_block=[A, {"kind": "conv"}])


def test_a_failed_reference_stops_the_search_and_a_failed_candidate_ranks_last(tmp_path):
  def failing(block):
    if block[1]["kind"] == "ffn":  # SMALL_REFERENCE too
      return {"eval_loss": None, "step_time_s": None, "error": "exit 1"}
    return Counting()(block)

  with pytest.raises(UserError, match=r"The reference block a f320 a f320 gave no step time"):
    _search(tmp_path / "a.jsonl", failing)
  best, records = _search(tmp_path / "b.jsonl", failing, reference_block=TARGET)
  failed = [r for r in records[1:] if r["eval_loss"] is None]
  assert failed and not any(r["feasible"] for r in failed) and best["block"][1]["kind"] != "ffn"


def _write_run(model_dir, step_times, eval_loss):
  model_dir.mkdir(parents=True)
  rows = [{"step": 2 * (i + 1), "step_time_s": t} for i, t in enumerate(step_times)]
  (model_dir / "train_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  eval_row = {"step": rows[-1]["step"], "cross_entropy": eval_loss, "loss": eval_loss + 0.01}
  (model_dir / "eval_metrics.jsonl").write_text(json.dumps(eval_row) + "\n")


def test_run_metrics_leave_out_the_compiling_period(tmp_path):
  _write_run(tmp_path / "run", [9.0, 0.3, 0.1, 0.2, 5.0, 0.25], 3.5)
  got = block_search.run_metrics(str(tmp_path / "run"))
  assert got == {"eval_loss": 3.5, "eval_total_loss": 3.51, "step_time_s": 0.25}


def test_the_command_line_with_training_faked(tmp_path, monkeypatch, capsys):
  trained = []

  def fake_train(name, gin_files, bindings, args, model_dir, *, log_period):
    assert gin_files == block_search.GIN_FILES and (args.steps, log_period) == (10, 2)
    assert args.eval_period == 10 and args.batch_size == 4
    setting, block = bindings[0].split(" = ", 1)
    block = ast.literal_eval(block)  # what gin reads
    assert setting == "TransformerConfig.block" and block_search.canonical_block(block) == block
    assert name == block_search.summary(block)
    trained.append(block)
    if block[0]["kind"] == "ffn":  # a candidate that fails to train
      raise UserError("Training failed (exit 1); its log is above.")
    step_time = _step_time(block)
    _write_run(
        pathlib.Path(model_dir), [9.0, step_time, step_time, step_time, 1.0], _distance(block)
    )

  monkeypatch.setattr(moe_experiment, "train", fake_train)
  flags = [f"--out_dir={tmp_path / 'out'}", "--candidates=6", "--population=3", "--steps=10"]
  flags += ["--batch_size=4", "--tolerance=1"]
  assert block_search.main(flags) == 0
  reference = block_search.canonical_block(block_search.GLAM_BLOCK)
  assert len(trained) == 7 and trained[0] == reference
  table = capsys.readouterr().out
  loss = f"{_distance(reference):.4f}"
  seconds = f"{_step_time(reference):.4f}"
  assert f"ref | a f a g:k2:2.0 a f a g:k2:2.0 | {loss} | {seconds} | 1.00x | yes" in table
  log = [
      json.loads(line) for line in (tmp_path / "out" / "candidates.jsonl").read_text().splitlines()
  ]
  assert [r["index"] for r in log] == list(range(7))
  failed = [r for r in log if r["block"][0]["kind"] == "ffn"]
  assert failed and all(r["error"].startswith("Training failed") for r in failed)
  summary = json.loads((tmp_path / "out" / "search.json").read_text())
  assert summary["best"]["feasible"] and summary["settings"]["candidates"] == 6
  assert f"{summary['best']['index']} | {block_search.summary(summary['best']['block'])}" in table
  assert block_search.main(flags) == 0 and len(trained) == 7  # resumed: nothing trained again

  assert block_search.main(flags + ["--reference=[{'kind': 'attention'}]"]) == 1
  assert "ERROR: --reference is not JSON" in capsys.readouterr().err
  assert block_search.main(flags + ["--steps=1"]) == 1
  assert "ERROR: --steps=1 must be >= 2" in capsys.readouterr().err
  assert block_search.main(flags + ["--steps=20"]) == 1
  err = capsys.readouterr().err
  assert "candidates.jsonl was written with other settings (steps: 10 there, 20 now)" in err
