"""The decode loop runs once per generated token: a longer prompt is prefilled, not stepped.

The same number of tokens (EOS suppressed, so every row uses its whole room) is generated
after a short and a long prompt; a `jax.debug.callback` in the logit callback counts the loop
iterations, which must be the number of generated tokens in both cases. The outputs are
checked against full forward passes over prompt + continuation.
"""

import functools

import jax
import numpy as np
import pytest

from tests.model_zoo.decoding import common
from model_zoo.decoding import beam_search, sampling

GENERATED = 3
PROMPT_LENGTHS = (1, 12)
ALPHA = 0.6
DECODERS = ("greedy", "sampling", "beam")

_STEPS = []  # one entry per decoding-loop iteration of the latest run


def _count_step():
  _STEPS.append(1)


def _suppress_eos(log_probs, state):
  del state
  jax.debug.callback(_count_step)
  return log_probs.at[:, common.EOS].set(-1e30)


def _decoder(kind):
  if kind == "greedy":
    return sampling.greedy(logit_callback=_suppress_eos)
  if kind == "sampling":
    return sampling.Sampling(temperature=1.0, num_decodes=4, logit_callback=_suppress_eos)
  return beam_search.BeamSearch(beam_size=4, alpha=ALPHA, logit_callback=_suppress_eos)


@functools.lru_cache(maxsize=None)
def _setup(prompt_length):
  """The 16-token LM and 4 prompts of `prompt_length` tokens, decode length prompt + GENERATED."""
  model, _, params = common.lm16()
  prompts = np.random.RandomState(prompt_length).randint(2, 16, size=(4, prompt_length))
  return model, params, common.decoder_only_batch(prompts.tolist(), prompt_length + GENERATED)


def _decode(kind, prompt_length):
  model, params, batch = _setup(prompt_length)
  _STEPS.clear()
  sequences, scores = common.predict(model, params, batch, _decoder(kind), seed=3)
  jax.effects_barrier()
  return sequences, scores, len(_STEPS)


def _expected_scores(prompt_length, sequences):
  """Summed log-probs of each [B, E, L] continuation after its prompt, by a full forward."""
  model, params, batch = _setup(prompt_length)
  rows, per_example, length = sequences.shape
  inputs = np.repeat(np.asarray(batch["decoder_input_tokens"]), per_example, axis=0)
  targets = np.zeros((rows * per_example, length), np.int32)
  targets[:, :prompt_length] = inputs[:, 1 : prompt_length + 1]
  targets[:, prompt_length:] = sequences.reshape(-1, length)[:, :GENERATED]
  repeated = {k: np.repeat(np.asarray(v), per_example, axis=0) for k, v in batch.items()}
  start = np.full(len(targets), prompt_length)
  log_p = common.sequence_log_probs(model, params, repeated, targets, start, start + GENERATED)
  return log_p.reshape(rows, per_example)


@pytest.mark.slow
@pytest.mark.parametrize("kind", DECODERS)
def test_loop_iterations_do_not_grow_with_the_prompt_length(kind):
  for prompt_length in PROMPT_LENGTHS:
    sequences, scores, steps = _decode(kind, prompt_length)
    assert steps == GENERATED, (prompt_length, steps)
    assert sequences.shape[-1] == prompt_length + GENERATED
    # The continuation starts at column 0, uses the whole room and nothing after it.
    assert not np.any(sequences[..., :GENERATED] == common.EOS)
    assert not sequences[..., GENERATED:].any()
    expected = _expected_scores(prompt_length, sequences)
    if kind == "beam":
      expected = expected / common.length_penalty(GENERATED, ALPHA)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_greedy_after_a_long_prompt_equals_numpy_greedy():
  """Greedy (EOS suppressed) after the long prompts: the NumPy loop of full forwards."""
  prompt_length = PROMPT_LENGTHS[-1]
  model, params, batch = _setup(prompt_length)
  sequences, _, _ = _decode("greedy", prompt_length)

  def log_probs(targets):
    lp = common.full_forward_log_probs(model, params, batch, targets)
    lp[..., common.EOS] = -1e30
    return lp

  expected, _ = common.greedy_reference(
      None, None, batch, [prompt_length] * 4, prompt_length + GENERATED, step_log_probs=log_probs
  )
  np.testing.assert_array_equal(sequences[:, 0], expected)
