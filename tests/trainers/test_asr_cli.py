"""The ASR model through the command lines: `trainers.train` overfits a handful of espeak-ng
utterances to exact transcripts, and `trainers.eval` decodes a split with and without a
language model fused into beam search (gin/runs/asr_fusion.gin).

Runs use one CPU device in a subprocess, as a user runs them (on the suite's 8 fake devices
a loaded 2-core machine can starve one device past XLA's all-reduce rendezvous timeout).
"""

import json
import os
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest

from tasks.asr import speech_dataset

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="needs Debian's espeak-ng (apt-get install espeak-ng)"
)

STEPS = 300
ASR_FLAGS = [
    "--gin_file=gin/models/asr_tiny.gin",
    "--gin_file=gin/runs/pretrain.gin",
    "--gin_file=gin/mixtures/asr.gin",
    "--gin_file=gin/runs/asr.gin",
    "--gin.MIXTURE_OR_TASK_NAME='asr_tiny_en'",
    "--gin.TASK_FEATURE_LENGTHS={'inputs': 320, 'targets': 32}",
    f"--gin.TRAIN_STEPS={STEPS}",
    "--gin.BATCH_SIZE=4",
    "--gin.warmup_cosine_decay.warmup_steps=30",
    "--gin.EVAL_STEPS=3",
]


def _run(module, flags, env):
  done = subprocess.run(
      [sys.executable, "-m", module, *flags], env=env, capture_output=True, text=True, check=False
  )
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  return done.stdout


def _last_eval(model_dir):
  lines = open(os.path.join(model_dir, "eval_metrics.jsonl")).read().splitlines()
  return json.loads(lines[-1])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  """One CPU device and a cache holding the tiny speech dataset."""
  cache = tmp_path_factory.mktemp("cache")
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("PODZOO_CACHE", str(cache))
    speech_dataset.prepare("tiny")
  return {
      **os.environ,
      "PODZOO_CACHE": str(cache),
      "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
  }


@pytest.fixture(scope="module")
def asr_dir(env, tmp_path_factory):
  """A tiny ASR model trained on the 12 train utterances of asr_tiny_en and evaluated there."""
  model_dir = tmp_path_factory.mktemp("asr")
  flags = ASR_FLAGS + [
      f"--gin.MODEL_DIR='{model_dir}'",
      f"--gin.EVAL_PERIOD={STEPS}",
      "--gin.validation/DatasetConfig.split='train'",
      "--gin.infer_eval/DatasetConfig.split='train'",
  ]
  _run("trainers.train", flags, env)
  return model_dir


@pytest.mark.slow
def test_a_tiny_asr_model_overfits_a_handful_of_utterances_to_exact_transcripts(asr_dir):
  last = _last_eval(asr_dir)
  assert last["step"] == STEPS
  assert last["asr_tiny_en/wer"] == 0.0  # every word of every transcript, exactly
  assert last["accuracy"] > 0.99


def _write_wav(path, samples, rate=16000, channels=1):
  with wave.open(str(path), "wb") as f:
    f.setnchannels(channels)
    f.setsampwidth(2)
    f.setframerate(rate)
    f.writeframes(np.asarray(samples, "<i2").tobytes())


@pytest.mark.slow
def test_infer_transcribes_a_split_and_wav_files(asr_dir, env, tmp_path):
  flags = ASR_FLAGS + [
      "--gin_file=gin/runs/infer.gin",
      f"--gin.MODEL_DIR='{asr_dir}'",
      "--gin.validation/DatasetConfig.split='train'",
      "--gin.infer.decoder=@BeamSearch()",
      f"--gin.infer.output_dir='{tmp_path}'",
  ]
  _run("trainers.infer", flags, env)
  records = [json.loads(line) for line in (tmp_path / f"predict-{STEPS}.jsonl").open()]
  assert len(records) >= 8
  assert all(r["output"] == r["target"] and r["target"] for r in records)

  # The same utterances as WAV files: read and turned into log-mels as the task does.
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("PODZOO_CACHE", env["PODZOO_CACHE"])
    source = speech_dataset.source("tiny", "en")
    utterances = list(source.get_dataset("train", shuffle=False).take(3).as_numpy_iterator())
  lines = []
  for i, ex in enumerate(utterances):
    _write_wav(tmp_path / f"{i}.wav", ex["audio"])
    lines.append(json.dumps({"input": str(tmp_path / f"{i}.wav"), "target": ex["text"].decode()}))
  (tmp_path / "wavs.jsonl").write_text("\n".join(lines) + "\n")
  _run(
      "trainers.infer",
      flags + [f"--gin.infer.input_file='{tmp_path / 'wavs.jsonl'}'", "--gin.infer.overwrite=True"],
      env,
  )
  records = [json.loads(line) for line in (tmp_path / f"predict-{STEPS}.jsonl").open()]
  assert [r["output"] for r in records] == [ex["text"].decode() for ex in utterances]

  # Audio a model cannot hear is refused with the fix, before any decoding.
  _write_wav(tmp_path / "8k.wav", utterances[0]["audio"][::2], rate=8000)
  for name, message in [("8k.wav", "sample rate 8000 Hz; expected 16000"), ("none.wav", "no such")]:
    (tmp_path / "bad.txt").write_text(f"{tmp_path / name}\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers.infer",
            *flags,
            f"--gin.infer.input_file='{tmp_path / 'bad.txt'}'",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and message in done.stdout + done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_eval_decodes_with_and_without_a_fused_lm(asr_dir, env, tmp_path):
  lm_dir = tmp_path / "lm"
  _run(
      "trainers.train",
      [
          "--gin_file=gin/models/decoder_only_tiny.gin",
          "--gin_file=gin/runs/pretrain.gin",
          "--gin_file=gin/mixtures/asr_lm.gin",
          "--gin_file=gin/runs/short_run.gin",
          "--gin.MIXTURE_OR_TASK_NAME='asr_lm_en'",
          "--gin.TRAIN_STEPS=60",
          "--gin.BATCH_SIZE=16",
          "--gin.train.eval_dataset_cfg=None",
          f"--gin.MODEL_DIR='{lm_dir}'",
      ],
      env,
  )
  fusion_flags = ASR_FLAGS + [
      "--gin_file=gin/runs/eval.gin",
      "--gin_file=gin/runs/asr_fusion.gin",
      "--gin_file=gin/models/fused_lm_dense_tiny.gin",
      f"--gin.MODEL_DIR='{asr_dir}'",
      f"--gin.LM_DIR='{lm_dir}'",
      "--gin.FUSION_LANGUAGE='en'",
      "--gin.infer_eval/DatasetConfig.split='train'",
      "--gin.validation/DatasetConfig.split='train'",
  ]
  # lambda = beta = 0: the fused beam search is the plain one.
  out = _run(
      "trainers.eval",
      fusion_flags + ["--gin.LM_WEIGHTS={'en': 0.0}", "--gin.LENGTH_BONUSES={'en': 0.0}"],
      env,
  )
  assert "asr_tiny_en  fused/wer" in out
  row = _last_eval(asr_dir)
  assert row["asr_tiny_en/fused/wer"] == row["asr_tiny_en/beam/wer"] == 0.0
  # A heavy LM weight overrules the acoustics of an undertrained LM's unfamiliar sentences.
  _run("trainers.eval", fusion_flags + ["--gin.LM_WEIGHTS={'en': 5.0}"], env)
  row = _last_eval(asr_dir)
  assert row["asr_tiny_en/beam/wer"] == 0.0 and row["asr_tiny_en/fused/wer"] > 0.0
  # The sweep keeps a pair no worse than no fusion (lambda = beta = 0 is on its grid) and writes
  # the tables asr_fusion.gin reads.
  lm_flags = [
      f"--model_dir={asr_dir}",
      "--lm_gin_file=gin/models/decoder_only_tiny.gin",
      "--lm_gin_file=gin/runs/pretrain.gin",
      "--lm_gin_file=gin/mixtures/asr_lm.gin",
      "--lm_gin_file=gin/runs/short_run.gin",
      "--lm_binding=MIXTURE_OR_TASK_NAME='asr_lm_en'",
      "--lm_binding=TRAIN_STEPS=60",
      f"--lm_dir={lm_dir}",
  ]
  out = _run(
      "tools.fusion_sweep",
      [
          *(f for f in ASR_FLAGS if not f.startswith("--gin.warmup")),
          *lm_flags,
          "--split=train",
          "--lm_weights",
          "0",
          "5",
          "--length_bonuses",
          "0",
          f"--gin_out={tmp_path / 'tuned.gin'}",
          f"--json_out={tmp_path / 'sweep.json'}",
      ],
      env,
  )
  best = json.loads((tmp_path / "sweep.json").read_text())["best"]["en"]
  assert best == {"lm_weight": 0.0, "length_bonus": 0.0, "wer": 0.0, "plain": 0.0}, out
  assert "LM_WEIGHTS = {'en': 0.0}" in (tmp_path / "tuned.gin").read_text()
  # The real-time-factor benchmark times the same decoders; its audio is the utterances'.
  _run(
      "tools.benchmark_asr_rtf",
      [
          *(f for f in ASR_FLAGS if not f.startswith("--gin.warmup")),
          *lm_flags,
          "--split=test",
          "--batches=1",
          "--repeats=1",
          "--beam_sizes",
          "2",
          f"--json_out={tmp_path / 'rtf.json'}",
      ],
      env,
  )
  rtf = json.loads((tmp_path / "rtf.json").read_text())
  assert [row["decoder"] for row in rtf["rows"]] == ["beam2", "beam2+lm"]
  assert rtf["rows"][1]["time_vs_plain"] > 0 and rtf["rows"][0]["audio_seconds_per_second"] > 0
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("PODZOO_CACHE", env["PODZOO_CACHE"])
    source = speech_dataset.source("tiny", "en")
    samples = [int(ex["num_samples"]) for ex in source.get_dataset("test", shuffle=False)]
  assert rtf["utterances"] == len(samples)
  assert abs(rtf["audio_seconds"] - sum(samples) / 16000) <= 0.01 * len(samples)
