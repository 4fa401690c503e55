"""PaLM 2 control tokens work: a small LM trained by `trainers.train` on `controlled_lm` (half its
examples behind `<lang:X><len:Y>`) makes longer continuations when asked for `<len:long>` than
for `<len:short>`, and more German ones when asked for `<lang:de>` than for `<lang:en>`.
"""

import os
import subprocess
import sys

import gin
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from model_zoo import models
from model_zoo.decoding import sampling
from tasks.controlled import control_tokens, rewards
from trainers import cli, gin_utils
from trainers import train  # noqa: F401  (registers train(), which the run configs bind)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

STEPS = 400
FLAGS = [
    "--gin_file=gin/models/decoder_only_tiny.gin",
    "--gin_file=gin/runs/pretrain.gin",
    "--gin_file=gin/runs/short_run.gin",
    "--gin.MIXTURE_OR_TASK_MODULE='tasks.controlled.control_tokens'",
    "--gin.MIXTURE_OR_TASK_NAME='controlled_lm'",
    "--gin.TASK_FEATURE_LENGTHS={'targets': 32}",
    "--gin.TransformerConfig.vocab_size=8192",
    "--gin.TransformerConfig.num_layers=2",
    f"--gin.TRAIN_STEPS={STEPS}",
    "--gin.BATCH_SIZE=32",
    "--gin.train.eval_dataset_cfg=None",
]
SAMPLES, LENGTH = 128, 24


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("controlled_lm")
  # One CPU device, as a user trains it: on the suite's 8 fake devices a loaded 2-core machine
  # starved one device's thread past XLA's 40 s all-reduce rendezvous timeout, which aborts.
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  done = subprocess.run(
      [sys.executable, "-m", "trainers.train", *FLAGS, f"--gin.MODEL_DIR='{model_dir}'"],
      check=False,
      env=env,
  )
  assert done.returncode == 0
  gin.clear_config()
  cli.import_configurables()
  gin_utils.parse_gin(gin_utils.parse_flags([*FLAGS, f"--gin.MODEL_DIR='{model_dir}'"]))
  model = models.DecoderOnlyModel()
  gin.clear_config()
  state = os.path.join(model_dir, "checkpoints", str(STEPS), "state")
  return model, ocp.StandardCheckpointer().restore(state)["params"]


def samples(model, params, prompt: str) -> np.ndarray:
  vocabulary = control_tokens.control_vocabulary()
  ids = [int(t) for t in vocabulary.encode(prompt)]
  batch = model.prompt_batch([ids] * SAMPLES, SAMPLES, len(ids) + LENGTH)
  tokens, _ = jax.jit(
      lambda p, b: model.predict_batch(p, b, jax.random.PRNGKey(0), sampling.Sampling())
  )(params, batch)
  return np.asarray(tokens)


def generated_lengths(tokens: np.ndarray, eos_id: int) -> np.ndarray:
  ends = [np.flatnonzero(row == eos_id) for row in tokens]
  return np.array([e[0] + 1 if len(e) else np.count_nonzero(row) for e, row in zip(ends, tokens)])


def test_length_tokens_move_the_length(trained):
  model, params = trained
  long = samples(model, params, control_tokens.control_prompt(language="en", length="long"))
  short = samples(model, params, control_tokens.control_prompt(language="en", length="short"))
  long_mean = generated_lengths(long, model.eos_id).mean()
  short_mean = generated_lengths(short, model.eos_id).mean()
  assert long_mean > short_mean + 3.0, (long_mean, short_mean)


def test_language_tokens_move_the_language(trained):
  model, params = trained
  german = rewards.get("langid:de")
  vocabulary = control_tokens.control_vocabulary()

  def mean_log_p_german(prompt):
    tokens = samples(model, params, prompt)
    rows = rewards.rollouts_from_tokens(vocabulary, tokens, model.eos_id, np.full(SAMPLES, LENGTH))
    return german(rows).mean()

  de = mean_log_p_german(control_tokens.control_prompt(language="de", length="medium"))
  en = mean_log_p_german(control_tokens.control_prompt(language="en", length="medium"))
  assert de > en + 2.0, (de, en)
