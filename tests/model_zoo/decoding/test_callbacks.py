"""Logit and state callbacks, and the decoders' argument checks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.model_zoo.decoding import common
from model_zoo.decoding import beam_search, sampling
from model_zoo.errors import ConfigError

LENGTH = common.ED_LENGTH
ALPHA = 0.6
BEAM_SIZES = {"beam": 8, "beam4": 4}


@functools.lru_cache(maxsize=None)
def _setup():
  model, batch, params = common.ed16()
  greedy, _ = common.greedy_reference(model, params, batch, np.zeros(8, int), LENGTH)
  # The token to forbid: the one greedy outputs use most (EOS and pad aside).
  counts = np.bincount(greedy.reshape(-1), minlength=16)
  counts[[common.PAD, common.EOS]] = 0
  return model, batch, params, int(np.argmax(counts))


_STEPS = []  # one entry per decoding-loop iteration of the latest run


def _count_step():
  _STEPS.append(1)


@functools.lru_cache(maxsize=None)
def _compiled(kind):
  """predict_batch with a logit callback adding `penalty` [V] and a state callback marking the
  rows of example b done once `stop_at[b]` tokens are generated.

  Both are arguments of one compiled function, so the runs with and without them (a zero
  penalty, stop_at past the end) share one compilation.
  """
  model, _, _, _ = _setup()

  def run(params, batch, rng, penalty, stop_at):
    def logit_callback(log_probs, state):
      jax.debug.callback(_count_step)
      return log_probs + penalty

    def state_callback(state):
      per_row = jnp.repeat(stop_at, state.done.shape[0] // stop_at.shape[0])
      return state.replace(done=jnp.logical_or(state.done, state.step >= per_row))

    if kind == "greedy":
      decoder = sampling.greedy(logit_callback=logit_callback, state_callback=state_callback)
    elif kind == "sampling":
      decoder = sampling.Sampling(
          temperature=1.5,
          num_decodes=16,
          logit_callback=logit_callback,
          state_callback=state_callback,
      )
    else:
      decoder = beam_search.BeamSearch(
          beam_size=BEAM_SIZES[kind],
          alpha=ALPHA,
          logit_callback=logit_callback,
          state_callback=state_callback,
      )
    return model.predict_batch(params, batch, rng, decoder=decoder, return_all_decodes=True)

  return jax.jit(run)


def _predict(kind, forbid=None, stop_at=LENGTH + 1, seed=0):
  """Decodes; returns sequences [B, E, L], scores [B, E] and the number of loop iterations.

  `stop_at`: generated tokens after which the state callback marks an example done (one
  number for all, or one per example).
  """
  _, batch, params, _ = _setup()
  penalty = np.zeros(16, np.float32)
  if forbid is not None:
    penalty[forbid] = -1e30
  stop_at = np.broadcast_to(np.asarray(stop_at, np.int32), (len(batch["encoder_input_tokens"]),))
  _STEPS.clear()
  sequences, scores = _compiled(kind)(params, batch, jax.random.PRNGKey(seed), penalty, stop_at)
  jax.effects_barrier()
  return np.asarray(sequences), np.asarray(scores), len(_STEPS)


def test_forbidden_token_never_appears_in_greedy_outputs():
  model, batch, params, token = _setup()
  free, _, _ = _predict("greedy")
  assert np.any(free == token)  # without the callback it does appear
  sequences, scores, _ = _predict("greedy", forbid=token)
  assert not np.any(sequences == token)

  # Exactly the NumPy greedy loop over the callback-adjusted log-probs.
  def adjusted(targets):
    lp = common.full_forward_log_probs(model, params, batch, targets)
    lp[..., token] = -1e30
    return lp

  expected, expected_scores = common.greedy_reference(
      None, None, {}, np.zeros(8, int), LENGTH, step_log_probs=adjusted
  )
  np.testing.assert_array_equal(sequences[:, 0], expected)
  np.testing.assert_allclose(scores[:, 0], expected_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["sampling", "beam"])
def test_forbidden_token_never_appears_in_sampled_or_beam_outputs(kind):
  _, _, _, token = _setup()
  free, free_scores, _ = _predict(kind, seed=5)
  assert np.any(free[free_scores > -1e29] == token)  # without the callback it does appear
  sequences, scores, _ = _predict(kind, forbid=token, seed=5)
  valid = scores > -1e29  # beam slots that hold a finished hypothesis
  assert valid.any() and not np.any(sequences[valid] == token)


@pytest.mark.parametrize("kind", ["greedy", "sampling"])
def test_state_callback_that_marks_rows_done_stops_decoding(kind):
  model, batch, params, _ = _setup()
  free, _, free_steps = _predict(kind, seed=7)
  assert free_steps > 2 and np.any(free[:, :, 2:])  # would go on without the callback
  sequences, scores, steps = _predict(kind, stop_at=2, seed=7)
  assert steps == 2  # the loop stopped, it did not just write zeros
  assert not sequences[:, :, 2:].any()
  # The same first two tokens (same rng); decodes are sorted by score, so compare as sets.
  for got, want in zip(sequences[:, :, :2], free[:, :, :2]):
    assert sorted(map(tuple, got)) == sorted(map(tuple, want))
  rows, per_example = scores.shape
  flat = sequences.reshape(rows * per_example, LENGTH)
  repeated = {k: np.repeat(v, per_example, axis=0) for k, v in batch.items()}
  expected = common.sequence_log_probs(
      model,
      params,
      repeated,
      flat,
      np.zeros(len(flat), int),
      np.minimum(common.generated_length(flat), 2),
  )
  np.testing.assert_allclose(scores.reshape(-1), expected, rtol=1e-5, atol=1e-5)


def _beam_scores(sequences, max_tokens):
  """[B, K, L] -> [B, K]: log p / length_penalty(n) of each output by a full forward, with n
  its tokens up to and including EOS, at most `max_tokens` (the independent beam score)."""
  model, batch, params, _ = _setup()
  rows, k = sequences.shape[:2]
  flat = sequences.reshape(rows * k, LENGTH)
  repeated = {key: np.repeat(v, k, axis=0) for key, v in batch.items()}
  n = np.minimum(common.generated_length(flat), max_tokens)
  log_p = common.sequence_log_probs(model, params, repeated, flat, np.zeros(len(flat), int), n)
  return (log_p / common.length_penalty(n, ALPHA)).reshape(rows, k)


def test_state_callback_that_marks_beams_done_stops_their_examples():
  """Beam search: an example whose rows are marked done stops growing; the loop stops once
  every example is done. A stopped example keeps its finished hypotheses (each ending at
  EOS), or, with none yet, returns its live beams scored as if the length ran out there."""
  free, free_scores, free_steps = _predict("beam4")
  assert free_steps > 2 and np.any(free[:, :, 2:])  # would go on without the callback
  sequences, scores, steps = _predict("beam4", stop_at=2)
  assert steps == 2  # the loop stopped, it did not just write zeros
  assert not sequences[:, :, 2:].any()
  valid = scores > -1e29
  assert valid[:, 0].all() and np.all(np.diff(scores, axis=1) <= 0)  # best first
  assert not sequences[~valid].any()  # empty slots hold nothing
  np.testing.assert_allclose(scores[valid], _beam_scores(sequences, 2)[valid], rtol=1e-5, atol=1e-5)
  has_eos = np.any(sequences == common.EOS, axis=-1)
  kept = has_eos[:, 0]  # examples in which something finished within two tokens
  for b in range(len(sequences)):
    if kept[b]:  # only its finished hypotheses, each ending at EOS
      assert has_eos[b][valid[b]].all()
    else:  # its live beams (two tokens each, as their scores above say), no EOS
      assert valid[b].all() and not has_eos[b].any()
  assert kept.any() and not kept.all(), kept  # both rules occur
  # Stopping half of the examples leaves the others' outputs exactly as without the callback.
  half = np.where(np.arange(len(sequences)) % 2 == 0, 2, LENGTH + 1)
  mixed, mixed_scores, mixed_steps = _predict("beam4", stop_at=half)
  assert mixed_steps > 2
  np.testing.assert_array_equal(mixed[half == 2], sequences[half == 2])
  np.testing.assert_allclose(mixed_scores[half == 2], scores[half == 2], rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(mixed[half > 2], free[half > 2])
  np.testing.assert_allclose(mixed_scores[half > 2], free_scores[half > 2], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(top_p=0.0), "Sampling.top_p"),
        (dict(top_p=1.5), "Sampling.top_p"),
        (dict(top_p=-0.1), "Sampling.top_p"),
        (dict(temperature=-1.0), "Sampling.temperature"),
        (dict(top_k=-1), "Sampling.top_k"),
        (dict(num_decodes=0), "Sampling.num_decodes"),
    ],
)
def test_invalid_sampling_arguments_are_rejected_by_name(kwargs, field):
  with pytest.raises(ConfigError, match=field):
    sampling.Sampling(**kwargs)


def test_valid_extremes_are_accepted():
  sampling.Sampling(top_p=1.0, temperature=0.0, top_k=0, num_decodes=1)
  beam_search.BeamSearch(beam_size=1, alpha=0.0)


@pytest.mark.parametrize("beam_size", [0, -2])
def test_invalid_beam_size_is_rejected_by_name(beam_size):
  with pytest.raises(ConfigError, match="BeamSearch.beam_size"):
    beam_search.BeamSearch(beam_size=beam_size)
