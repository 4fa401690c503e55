"""tools/benchmark_decode: greedy, sampling and beam search rates; cached and no-cache greedy
decoding agree; JSON keys."""

import dataclasses
import json
import os

import flax.linen as nn
import gin
import jax
import numpy as np
import pytest

from tests.tools import without_tensorflow
from tools import benchmark_decode
from model_zoo.feature_converters import DecoderFeatureConverter

REPO_ROOT = without_tensorflow.REPO_ROOT
TINY_GIN = os.path.join(REPO_ROOT, "gin/models/decoder_only_tiny.gin")
F32 = "--gin.TransformerConfig.dtype='float32'"


@pytest.fixture(autouse=True)
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.mark.slow
def test_tiny_run_writes_consistent_json(tmp_path):
  out = tmp_path / "sub" / "decode.json"
  prompt_lens, gen_len = [4, 9], 8
  rc = benchmark_decode.main(
      [
          f"--gin_file={TINY_GIN}",
          F32,
          "--batch_sizes",
          "1,2",
          "--prompt_lens",
          ",".join(map(str, prompt_lens)),
          "--gen_len",
          str(gen_len),
          "--repeats",
          "1",
          "--nocache_max_batch",
          "2",
          "--split_prefill",
          "--json_out",
          str(out),
      ]
  )
  assert rc == 0
  r = json.loads(out.read_text())
  for key in (
      "gin_files",
      "gin_overrides",
      "model",
      "dtype",
      "params_total",
      "device_kind",
      "jax_version",
      "batch_sizes",
      "prompt_lens",
      "gen_len",
      "sequence_lengths",
      "cached_decode_steps",
      "repeats",
      "warmup",
      "eos_suppressed",
      "match_tol",
      "temperature",
      "top_p",
      "beam_size",
      "nocache_batch_sizes",
      "split_prefill",
      "min_speedup",
      "max_decode_loop_time_vs_shortest_prompt",
      "all_outputs_match",
      "any_mismatch_beyond_float_noise",
      "results",
  ):
    assert key in r, key
  assert r["gin_files"] == [TINY_GIN] and r["gin_overrides"] == [
      "TransformerConfig.dtype='float32'"
  ]
  assert r["dtype"] == "float32" and r["params_total"] == 885_888
  assert (r["batch_sizes"], r["prompt_lens"], r["gen_len"]) == ([1, 2], prompt_lens, gen_len)
  assert r["sequence_lengths"] == [p + gen_len for p in prompt_lens]
  assert r["cached_decode_steps"] == gen_len  # the prompt is prefilled, not stepped
  # One row per (batch size, prompt length), the prompt lengths side by side.
  assert [(row["batch_size"], row["prompt_len"]) for row in r["results"]] == [
      (1, 4),
      (1, 9),
      (2, 4),
      (2, 9),
  ]
  for row in r["results"]:
    for key in (
        "prefill_time_median_s",
        "prefill_compile_s",
        "decode_loop_time_median_s",
        "decode_loop_tokens_per_second",
        "decode_loop_time_vs_shortest_prompt",
        "cached_time_median_s",
        "cached_tokens_per_second",
        "cached_compile_s",
        "cached_program_bytes",
        "sampling_tokens_per_second",
        "sampling_program_bytes",
        "beam_tokens_per_second",
        "beam_program_bytes",
        "nocache_time_median_s",
        "nocache_tokens_per_second",
        "nocache_compile_s",
        "nocache_program_bytes",
        "speedup",
        "peak_memory_bytes",
        "peak_memory_source",
        "outputs_match",
        "loop_outputs_match_cached",
        "match_verdict",
        "cached_greedy_max_gap",
        "cached_score_error_per_token",
        "sampling_score_error_per_token",
        "beam_score_error_per_token",
    ):
      assert key in row, key
    assert row["sequence_length"] == row["prompt_len"] + gen_len
    for name in ("prefill", "decode_loop", "cached", "sampling", "beam", "nocache"):
      assert len(row[f"{name}_times_s"]) == len(row[f"{name}_warmup_times_s"]) == 1
      assert row[f"{name}_time_median_s"] == row[f"{name}_times_s"][0] > 0
    cached_s, nocache_s = row["cached_time_median_s"], row["nocache_time_median_s"]
    loop_s = row["decode_loop_time_median_s"]
    assert row["speedup"] == pytest.approx(nocache_s / cached_s, rel=1e-12)
    generated = row["batch_size"] * gen_len
    assert row["generated_tokens"] == generated
    assert row["cached_tokens_per_second"] == pytest.approx(generated / cached_s, rel=1e-12)
    assert row["nocache_tokens_per_second"] == pytest.approx(generated / nocache_s, rel=1e-12)
    for name in ("sampling", "beam"):  # per example: beam's batch x 4 hypotheses count once
      rate = generated / row[f"{name}_time_median_s"]
      assert row[f"{name}_tokens_per_second"] == pytest.approx(rate, rel=1e-12)
    assert row["decode_loop_tokens_per_second"] == pytest.approx(generated / loop_s, rel=1e-12)
    shortest = next(
        x for x in r["results"] if (x["batch_size"], x["prompt_len"]) == (row["batch_size"], 4)
    )
    assert row["decode_loop_time_vs_shortest_prompt"] == pytest.approx(
        loop_s / shortest["decode_loop_time_median_s"], rel=1e-12
    )
    # The decode loop timed alone (from the prefilled cache) gives predict_batch's tokens.
    assert row["loop_outputs_match_cached"]
    assert row["outputs_match"] and row["match_verdict"] == "identical"
    assert row["matching_rows"] == row["batch_size"] and row["first_mismatch_step"] is None
    assert row["cached_greedy_max_gap"] <= 1e-3
    for name in ("cached", "sampling", "beam", "nocache"):
      assert row[f"{name}_score_error_per_token"] <= 1e-3
    assert row["peak_memory_bytes"] > 0
  assert r["all_outputs_match"] and not r["any_mismatch_beyond_float_noise"]
  assert r["min_speedup"] == min(row["speedup"] for row in r["results"])
  assert r["max_decode_loop_time_vs_shortest_prompt"] == max(
      row["decode_loop_time_vs_shortest_prompt"] for row in r["results"]
  )


@pytest.mark.slow
def test_decoder_rates_beam_and_seeded_sampling(tmp_path, monkeypatch, capsys):
  """The default decoders at tiny sizes: tokens/s of greedy, sampling and beam search per batch
  size, beam at least as likely as greedy, and the same samples from the same seed."""
  monkeypatch.chdir(tmp_path)
  gen_len = 2  # beam >= greedy is certain only up to 2 tokens (see the module docstring)
  args = [f"--gin_file={TINY_GIN}", F32, "--prompt_len", "3", "--gen_len", str(gen_len)]
  args += ["--repeats", "1", "--warmup", "0"]
  assert benchmark_decode.main(args + ["--batch_sizes", "1,2"]) == 0
  assert not os.listdir(tmp_path)  # no files unless asked
  text = capsys.readouterr().out
  for column in ("greedy tok/s", "sampling tok/s", "beam4 tok/s", "no-cache tok/s", "log p"):
    assert column in text, column
  assert "prefill s" not in text  # the prefill / loop split only with --split_prefill
  r = json.loads(text[text.index("\n{") + 1 :])
  assert r["prompt_lens"] == [3] and r["beam_size"] == 4 and r["nocache_batch_sizes"] == [1]
  assert [row["batch_size"] for row in r["results"]] == [1, 2]
  for row, verdict in zip(r["results"], ("identical", "consistent")):  # no-cache at batch 1
    baseline = row["batch_size"] == 1
    assert ("nocache_time_median_s" in row) == baseline and ("outputs_match" in row) == baseline
    names = ("cached", "sampling", "beam") + (("nocache",) if baseline else ())
    for name in names:
      assert row[f"{name}_warmup_times_s"] == [] and len(row[f"{name}_times_s"]) == 1
      rate = row["batch_size"] * gen_len / row[f"{name}_time_median_s"]
      assert row[f"{name}_tokens_per_second"] == pytest.approx(rate, rel=1e-12), name
      assert row[f"{name}_score_error_per_token"] <= 1e-3, name
    assert row["match_verdict"] == verdict and row["cached_greedy_max_gap"] <= 1e-3
    # At 2 tokens beam ranks every continuation of its 4 best first tokens, greedy's among
    # them, so it never ends below greedy (up to float noise).
    assert row["beam_minus_greedy_min"] >= -1e-4
    # Sampling samples: the random model's next-token distribution is nearly flat (its samples
    # score ~ -log(vocab) per token), so a sample is almost never the most likely token.
    assert row["sampling_argmax_fraction"] < 1

  # The same seed draws the same samples, here at batch 1 alone (the first prompts drawn).
  again = tmp_path / "again.json"
  rerun_args = ["--batch_sizes", "1", "--nocache_max_batch", "0", "--json_out", str(again)]
  assert benchmark_decode.main(args + rerun_args) == 0
  rerun = json.loads(again.read_text())["results"][0]
  assert rerun["match_verdict"] == "consistent" and "nocache_time_median_s" not in rerun
  for name in ("cached", "sampling", "beam"):
    assert rerun[f"{name}_log_prob_per_token"] == r["results"][0][f"{name}_log_prob_per_token"]


def _tiny_model_and_params(length):
  args, bindings = benchmark_decode._parse_args([f"--gin_file={TINY_GIN}", F32])
  model = benchmark_decode._load_model(args, bindings)
  example = {
      "decoder_input_tokens": np.zeros((1, length), np.int32),
      "decoder_target_tokens": np.ones((1, length), np.int32),
  }
  return model, nn.unbox(model.init(jax.random.PRNGKey(0), example))


def _greedy(model):
  return benchmark_decode.predictor(model, benchmark_decode.greedy_decoder(model))


def _outputs(score_fn, params, prompts, tokens, scores):
  tokens = np.asarray(tokens)
  gaps, log_probs = score_fn(params, prompts, tokens)
  return {
      "tokens": tokens,
      "scores": np.asarray(scores),
      "gaps": np.asarray(gaps),
      "log_probs": np.asarray(log_probs),
  }


def test_decoders_agree_and_a_wrong_history_is_caught():
  prompt_len, gen_len, rows = 5, 6, 3
  length = prompt_len + gen_len
  model, params = _tiny_model_and_params(length)
  prompts = benchmark_decode.random_prompts(
      np.random.default_rng(1), rows, prompt_len, model.vocab_size
  )
  cached, cached_scores = jax.jit(_greedy(model))(
      params, DecoderFeatureConverter.prompt_batch(prompts, rows, length)
  )
  nocache, nocache_scores = jax.jit(benchmark_decode.nocache_decoder(model, gen_len))(
      params, prompts
  )
  cached = np.asarray(cached)
  assert cached.shape == (rows, length) and not cached[:, gen_len:].any()  # prompt stripped
  np.testing.assert_array_equal(cached[:, :gen_len], nocache)
  assert not (nocache == model.eos_id).any()
  np.testing.assert_allclose(cached_scores, nocache_scores, atol=1e-4)

  score_fn = jax.jit(benchmark_decode.teacher_forced(model))
  check = benchmark_decode.compare_outputs(
      {
          "cached": _outputs(score_fn, params, prompts, cached[:, :gen_len], cached_scores),
          "nocache": _outputs(score_fn, params, prompts, nocache, nocache_scores),
      },
      tol=1e-3,
  )
  assert check["match_verdict"] == "identical", check
  # The same tokens and scores judged against another history (all but the last prompt token
  # changed): what a cache that lost the earlier keys would look like. The random tiny model
  # mostly repeats the last token, so the tokens may still be greedy; the scores are not.
  other = prompts.copy()
  other[:, :-1] = prompts[::-1, :-1] + 1
  wrong = benchmark_decode.compare_outputs(
      {
          "cached": _outputs(score_fn, params, other, cached[:, :gen_len], cached_scores),
          "nocache": _outputs(score_fn, params, prompts, nocache, nocache_scores),
      },
      tol=1e-3,
  )
  assert wrong["match_verdict"] == "MISMATCH" and wrong["cached_score_error_per_token"] > 1e-2


def _flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return float(analysis["flops"])


@pytest.mark.slow
def test_prefill_and_decode_loop_split_the_cached_decoder():
  """The two programs timed apart: prefill + loop give predict_batch's tokens and scores, the
  loop starts from the cache it is given (its own prefill is dropped from its program), and
  its cost does not grow with the prompt."""
  gen_len, rows = 6, 3
  model, params = _tiny_model_and_params(gen_len)  # parameter shapes do not depend on the length
  loop_flops = {}
  for prompt_len in (5, 40):
    length = prompt_len + gen_len
    prompts = benchmark_decode.random_prompts(
        np.random.default_rng(2), rows, prompt_len, model.vocab_size
    )
    batch = DecoderFeatureConverter.prompt_batch(prompts, rows, length)
    prefill = jax.jit(benchmark_decode.prefill(model)).lower(params, batch).compile()
    cache = prefill(params, batch)
    loop = jax.jit(benchmark_decode.decode_loop(model)).lower(params, batch, cache).compile()
    whole = jax.jit(_greedy(model)).lower(params, batch).compile()
    tokens, scores = loop(params, batch, cache)
    cached, cached_scores = whole(params, batch)
    np.testing.assert_array_equal(tokens, cached)
    np.testing.assert_allclose(scores, cached_scores, atol=1e-5)
    # Keys and values zeroed (positions kept): other scores, so the given cache is used.
    lost = jax.tree.map(lambda x: x if x.dtype == np.int32 else np.zeros_like(x), cache)
    assert np.abs(np.asarray(loop(params, batch, lost)[1]) - np.asarray(scores)).max() > 1e-2
    # The loop program holds no prefill: the whole decoder costs prefill + loop.
    assert _flops(loop) < 0.5 * _flops(prefill)
    assert _flops(prefill) + _flops(loop) == pytest.approx(_flops(whole), rel=0.02)
    loop_flops[prompt_len] = _flops(loop)
  # One loop step's cost (XLA counts a while body once) grows only with the attended cache.
  assert loop_flops[40] < 1.2 * loop_flops[5]


def test_beam_score_check_catches_a_cache_left_unreordered():
  """Beam search's score error checks its cache reordering: with the cache rows left in place,
  hypotheses continue from other beams' histories and their scores are no longer theirs."""
  prompt_len, gen_len, rows, beams = 5, 6, 3, 4
  length = prompt_len + gen_len
  model, params = _tiny_model_and_params(length)
  prompts = benchmark_decode.random_prompts(
      np.random.default_rng(3), rows, prompt_len, model.vocab_size
  )
  batch = DecoderFeatureConverter.prompt_batch(prompts, rows, length)
  beam = benchmark_decode.decoders(model, temperature=1.0, top_p=0.9, beam_size=beams)["beam"]

  def decode(params, batch, reorder: bool):
    expanded = {k: jax.numpy.repeat(v, beams, axis=0) for k, v in batch.items()}  # as predict_batch
    inputs = model.decode_inputs(params, expanded)
    if not reorder:
      inputs = dataclasses.replace(inputs, reorder_cache=lambda cache, rows: cache)
    tokens, scores = beam(inputs, rng=jax.random.PRNGKey(0), eos_id=model.eos_id)
    return tokens[:, 0, :gen_len], scores[:, 0]

  score_fn = jax.jit(benchmark_decode.teacher_forced(model))
  errors = {}  # compare_outputs' beam_score_error_per_token
  for reorder in (True, False):
    tokens, scores = jax.jit(decode, static_argnums=2)(params, batch, reorder)
    _, log_probs = score_fn(params, prompts, tokens)
    errors[reorder] = float(np.max(np.abs(scores - log_probs.sum(axis=1)))) / gen_len
  assert errors[True] <= 1e-3 and errors[False] > 1e-2, errors


def test_compare_outputs_verdicts():
  tokens = np.array([[5, 6, 7], [8, 9, 10]])
  zeros = np.zeros((2, 3))

  def outputs(tokens, gaps=zeros, score_shift=0.0, log_prob=-1.0):
    return {
        "tokens": tokens,
        "gaps": gaps,
        "log_probs": zeros + log_prob,
        "scores": np.full((2,), 3 * log_prob + score_shift),
    }

  def compare(cached, nocache=None, **others):
    runs = {"cached": cached, **({} if nocache is None else {"nocache": nocache}), **others}
    return benchmark_decode.compare_outputs(runs, tol=1e-3)

  same = compare(outputs(tokens), outputs(tokens.copy()))
  assert same["outputs_match"] and same["match_verdict"] == "identical"
  assert same["matching_tokens_fraction"] == 1.0 and same["first_mismatch_step"] is None
  assert same["cached_log_prob_per_token"] == pytest.approx(-1.0)
  parted = tokens.copy()
  parted[1, 1:] = [3, 4]
  noise = compare(outputs(tokens, zeros + 1e-4), outputs(parted))
  assert not noise["outputs_match"] and noise["match_verdict"] == "differ within float noise"
  assert noise["matching_rows"] == 1 and noise["first_mismatch_step"] == 1
  assert noise["matching_tokens_fraction"] == pytest.approx(4 / 6)
  far = compare(outputs(tokens, zeros + 0.5), outputs(parted))
  assert far["match_verdict"] == "MISMATCH"
  scores_off = compare(outputs(tokens, score_shift=0.3), outputs(tokens))
  assert scores_off["outputs_match"] and scores_off["match_verdict"] == "MISMATCH"
  assert scores_off["cached_score_error_per_token"] == pytest.approx(0.1)
  # Without the no-cache baseline no tokens are compared. Sampling and beam search need not
  # choose the best tokens (their gaps go unchecked), only score them right.
  beam = outputs(parted, zeros + 0.5, log_prob=-0.8)
  alone = compare(outputs(tokens), sampling=outputs(parted, zeros + 0.5), beam=beam)
  assert alone["match_verdict"] == "consistent" and "outputs_match" not in alone
  assert alone["beam_minus_greedy_min"] == pytest.approx(0.6)
  assert alone["beam_log_prob_per_token"] == pytest.approx(-0.8)
  for name in ("sampling", "beam"):
    off = compare(outputs(tokens), **{name: outputs(parted, score_shift=0.6)})
    assert off["match_verdict"] == "MISMATCH"
    assert off[f"{name}_score_error_per_token"] == pytest.approx(0.2)


def test_encoder_decoder_model_is_refused(capsys):
  path = os.path.join(REPO_ROOT, "gin/models/encoder_decoder_tiny.gin")
  assert benchmark_decode.main([f"--gin_file={path}", "--batch_sizes", "1", "--gen_len", "2"]) == 1
  assert "decoder-only" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--batch_sizes", "1,0"),
        ("--batch_sizes", "1,x"),
        ("--gen_len", "0"),
        ("--prompt_len", "0"),
        ("--prompt_lens", "4,0"),
        ("--prompt_lens", "4,x"),
        ("--repeats", "0"),
        ("--warmup", "-1"),
        ("--beam_size", "0"),
        ("--temperature", "-1"),
        ("--top_p", "0"),
        ("--top_p", "1.5"),
        ("--nocache_max_batch", "-1"),
        ("--gin_typo", "1"),
    ],
)
def test_bad_flags_fail_with_usage(flag, value, capsys):
  with pytest.raises(SystemExit) as e:
    benchmark_decode.main([f"--gin_file={TINY_GIN}", flag, value])
  assert e.value.code == 2
  assert flag.lstrip("-") in capsys.readouterr().err


@pytest.mark.slow
def test_runs_without_tensorflow_or_seqio():
  """The GPU machine has no TensorFlow/SeqIO: the tool must not import them."""
  without_tensorflow.assert_runs_without_tensorflow(f"""
      from tools import benchmark_decode
      rc = benchmark_decode.main(["--gin_file={TINY_GIN}", "--batch_sizes", "1", "--prompt_len", "2",
                                  "--gen_len", "2", "--repeats", "1", "--warmup", "0"])
      assert rc == 0, rc
  """)
