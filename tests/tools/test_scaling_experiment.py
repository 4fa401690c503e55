"""tools/scaling_experiment and its size ladder (tools/model_sizes): the ladder's exact parameter
counts, the steps of a budget, the runs read from JSONL logs, the fits, table and plot; one
real run of 2 budgets x 3 sizes through the command lines (slow)."""

import json
import math

import gin
import jax
import numpy as np
import pytest

from model_zoo.errors import ConfigError
from tests.tools import without_tensorflow
from tools import benchmark_common, benchmark_train, model_sizes, scaling_experiment, scaling_laws

REPO_ROOT = without_tensorflow.REPO_ROOT
SETTINGS = {
    "gin_files": list(scaling_experiment.GIN_FILES),
    "mixture_gin": "gin/mixtures/catalog_lm.gin",
    "vocab_size": 8320,
    "sequence_length": 256,
    "batch_size": 8,
    "tokens_per_step": 2048,
    "eval_steps": 25,
    "train_data_tokens": 1_000_000,
}


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def test_the_ladder_grows_with_the_target_and_lands_near_it():
  targets = np.geomspace(2e4, 1e11, 40)
  rungs = [model_sizes.for_params(t) for t in targets]
  counts = [r.non_embedding_params for r in rungs]
  assert counts == sorted(counts)
  for target, rung in zip(targets, rungs):
    assert rung.num_heads * rung.head_dim == rung.emb_dim and rung.mlp_dim == 3 * rung.emb_dim
    assert rung.emb_dim % 32 == 0
    assert 0.5 <= rung.num_layers / model_sizes.preferred_layers(rung.emb_dim) <= 2.0
    # coarse rungs where a width step of 32 is a large share of the model, fine ones above
    tolerance = 0.45 if target < 1e5 else 0.25 if target < 1e6 else 0.1 if target < 1e7 else 0.05
    assert abs(rung.non_embedding_params / target - 1) <= tolerance


def test_a_rung_asked_for_by_its_own_count_is_itself():
  rung = model_sizes.size(128, 4)
  assert model_sizes.for_params(rung.non_embedding_params) == rung


@pytest.mark.parametrize("target", [0.0, -5.0, math.nan, 10.0])
def test_the_ladder_refuses_sizes_it_has_not(target):
  with pytest.raises(ConfigError, match="positive number|no model within 2x"):
    model_sizes.for_params(target)


def test_the_ladders_count_is_the_models_own():
  rung = model_sizes.size(96, 3)
  model = benchmark_common.load_model(
      ["gin/models/decoder_only.gin"],
      REPO_ROOT,
      [*rung.gin_bindings(), "TransformerConfig.vocab_size = 1000"],
      scaling_experiment._configured_model,  # pylint: disable=protected-access
      "scaling_experiment",
  )
  tokens = np.zeros((1, 8), np.int32)
  batch = {"decoder_input_tokens": tokens, "decoder_target_tokens": tokens}
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), batch))
  counts = benchmark_train.param_counts(params, tie_embeddings=True)
  assert counts["params_total"] == rung.total_params(1000)
  assert counts["params_total"] - counts["params_input_embedding"] == rung.non_embedding_params


def test_steps_spend_the_budget():
  # D = 1e12 / (6 * 98,624) = 1,689,917 tokens; / 2048 per step = 825.2 -> 826
  assert scaling_experiment.train_steps(1e12, 98_624, 2048) == 826
  assert scaling_experiment.train_steps(6 * 1000 * 2048, 1000, 2048) == 1


def test_the_schedule_decays_over_exactly_the_runs_steps():
  bindings = scaling_experiment.schedule_bindings(826)
  assert "warmup_cosine_decay.decay_steps = 826" in bindings
  assert "warmup_cosine_decay.warmup_steps = 50" in bindings
  assert "warmup_cosine_decay.end_fraction = 0.1" in bindings
  assert "warmup_cosine_decay.warmup_steps = 6" in scaling_experiment.schedule_bindings(60)


def test_each_budgets_sizes_are_distinct_rungs_around_chinchillas():
  sizes = scaling_experiment.budget_sizes(1e12, None, scaling_experiment.DEFAULT_SIZE_FACTORS)
  counts = [s.non_embedding_params for s in sizes]
  assert len(counts) == 5 and counts == sorted(counts)
  chinchilla = math.sqrt(1e12 / 120)
  assert counts[0] < chinchilla < counts[-1]
  with pytest.raises(ConfigError, match="only 2 distinct models.*spread --sizes"):
    scaling_experiment.budget_sizes(1e12, [1e5, 1.01e5, 3e5], ())


def _write_run(directory, steps, target_tokens, loss, step_time=0.5):
  directory.mkdir(parents=True)
  half = steps // 2
  rows = [
      {"step": half, "loss": 5.0, "step_time_s": step_time, "target_tokens": target_tokens},
      {"step": steps, "loss": 4.0, "step_time_s": step_time, "target_tokens": target_tokens},
  ]
  (directory / "train_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  (directory / "eval_metrics.jsonl").write_text(json.dumps({"step": steps, "loss": loss}) + "\n")


def test_a_run_is_read_from_its_logs(tmp_path):
  size = model_sizes.size(64, 2)
  _write_run(tmp_path / "run", 10, 1600.0, 3.25)
  row = scaling_experiment.read_run(str(tmp_path / "run"), 1e11, size, 10, SETTINGS)
  assert row["tokens"] == 16_000 and row["tokens_actual"]
  assert row["flops"] == 6 * size.non_embedding_params * 16_000
  assert row["epochs"] == pytest.approx(0.016)
  assert row["final_eval_loss"] == 3.25 and row["train_seconds"] == pytest.approx(5.0)
  assert row["params_total"] == size.non_embedding_params + 8320 * 64
  assert row["tokens_nominal"] == round(1e11 / (6 * size.non_embedding_params))


def test_without_logged_tokens_the_nominal_ones_count(tmp_path):
  _write_run(tmp_path / "run", 10, 0.0, 3.0)
  path = tmp_path / "run" / "train_metrics.jsonl"
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  path.write_text(
      "".join(json.dumps({k: v for k, v in r.items() if k != "target_tokens"}) + "\n" for r in rows)
  )
  assert scaling_experiment.trained_tokens(str(tmp_path / "run"), 10, 2048) == (20_480, False)


def _synthetic_results(budgets=(1e18, 1e19, 1e20), one_sided=False):
  """Runs whose losses follow Chinchilla's parametric law (tests/tools/test_scaling_laws.py)."""
  runs = []
  for budget in budgets:
    n_center = scaling_laws.CHINCHILLA.params(budget) * (30 if one_sided else 1)
    for factor in (0.25, 0.5, 1.0, 2.0, 4.0):
      n = round(n_center * factor)
      tokens = round(scaling_laws.tokens_for(budget, n))
      runs.append(
          {
              "budget": budget,
              "n_params": n,
              "params_total": n + 8320 * 64,
              "steps": math.ceil(tokens / 2048),
              "tokens": tokens,
              "flops": scaling_laws.flops(n, tokens),
              "epochs": tokens / 1e6,
              "final_eval_loss": 1.69 + 406.4 / n**0.34 + 410.7 / tokens**0.28,
              "train_seconds": 12.5,
              "wall_seconds": 40.0,
          }
      )
  return scaling_experiment.analyse(SETTINGS, runs)


def test_the_fits_table_and_plot(tmp_path):
  results = _synthetic_results()
  law = results["law"]
  assert law["alpha"] == pytest.approx(0.28 / 0.62, rel=0.01)
  assert law["beta"] == pytest.approx(0.34 / 0.62, rel=0.01)
  assert results["fit_budgets"] == [1e18, 1e19, 1e20] and not results["law_uses_unbracketed"]
  results = json.loads(json.dumps(results))  # the table and plot work from the JSON alone
  table = scaling_experiment.format_table(results)
  run = results["runs"][0]
  assert (
      f"{run['budget']:.1e} | {run['n_params']:,} | {run['params_total']:,} | {run['tokens']:,} | "
      f"{run['steps']} | {run['epochs']:.2f} | {run['final_eval_loss']:.4f} | "
      f"{run['train_seconds']:.0f}"
  ) in table
  b = results["budgets"][1]
  assert f"{b['n_opt']:,.0f} | {b['tokens_opt']:,.0f} | {b['tokens_opt'] / b['n_opt']:.1f}" in table
  assert f"C^{law['alpha']:.3f}" in table and f"C^{law['beta']:.3f}" in table
  assert "~0.5 each" in table and "WARNING" not in table
  png = tmp_path / "plot.png"
  scaling_experiment.plot(results, str(png))
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_unbracketed_optima_are_warned_about():
  results = _synthetic_results(one_sided=True)  # every size far above the optimum
  assert not any(b["bracketed"] for b in results["budgets"]) and results["law_uses_unbracketed"]
  table = scaling_experiment.format_table(results)
  assert table.count("optimum not bracketed; add sizes") == 3
  assert "exponents rest on unbracketed optima" in table


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--budgets", "1e12"], "at least 2 distinct budgets"),
        (["--budgets", "1e12", "-1"], "--budgets must be positive"),
        (["--sizes", "1e5", "0"], "--sizes must be positive"),
        (["--batch_size", "0"], "--batch_size=0 must be >= 1"),
        (["--mixture_gin", "gin/mixtures/nope.gin"], "no such file"),
    ],
)
def test_bad_flags_are_named(flags, match, capsys):
  with pytest.raises(SystemExit):
    scaling_experiment.main(flags)
  assert match in capsys.readouterr().err


@pytest.mark.slow
def test_two_budgets_of_three_real_runs_through_the_command_line(tmp_path):
  out = tmp_path / "out.json"
  rc = scaling_experiment.main(
      [
          *("--budgets", "5e8", "1e9"),
          *("--sizes", "13e3", "27e3", "49e3"),
          "--batch_size=8",  # the tests' 8 fake devices each take a row
          "--eval_steps=1",
          f"--out_dir={tmp_path / 'runs'}",
          f"--json_out={out}",
          f"--plot={tmp_path / 'plot.png'}",
      ]
  )
  assert rc == 0
  results = json.loads(out.read_text())
  assert results["vocab_size"] == 8320 and results["sequence_length"] == 256
  assert results["train_data_tokens"] > 1_000_000
  runs = results["runs"]
  assert [(r["budget"], r["n_params"]) for r in runs] == [
      (c, n) for c in (5e8, 1e9) for n in (13_408, 26_784, 49_344)
  ]
  for r in runs:
    assert r["tokens_actual"] and 0 < r["tokens"] <= r["steps"] * 2048
    assert r["steps"] == scaling_experiment.train_steps(r["budget"], r["n_params"], 2048)
    assert math.isfinite(r["final_eval_loss"]) and r["wall_seconds"] > r["train_seconds"] > 0
  assert [b["budget"] for b in results["budgets"]] == [5e8, 1e9]
  assert (tmp_path / "plot.png").stat().st_size > 20_000
