"""Generation through a StagedModel's pipeline stages, each stage keeping the KV cache of its
own layers on its own devices.

The prompts are prefilled stage after stage, one pass each, as DecoderOnlyModel.decode_inputs
prefills the whole model. Then every generated token runs the stages in turn: the previous
token enters the first stage, its activations [N, 1, D] are copied to the next stage's devices,
and the last stage applies the head and the decoder's own step (model_zoo.decoding's
DecodeLoop, compiled on the last stage's devices). So tokens, scores and random keys are those
of Model.predict_batch with the same decoder. The loop runs in Python, one step per token: one
compiled loop cannot span the stages' devices.
"""

import functools
import jax
import numpy as np

from model_zoo import models
from model_zoo.decoding import base
from model_zoo.decoding.sampling import DecodeLoop, Sampling
from trainers.serving.staged import StagedModel


def _cached_run(stage, length: int) -> models.CachedRun:
  return lambda variables, x, positions: stage.apply(
      variables, x, None, positions, decode=True, max_decode_length=length, mutable=["cache"]
  )


def _loop(
    decoder: Sampling,
    eos_id: int,
    length: int,
    max_new_tokens: jax.Array,
    *,
    step_input=None,
    cache=None,
    first_token=None,
) -> DecodeLoop:
  """The decoder's loop on the last stage, whose model step is `step_input(cache)`: the last
  stage on the earlier stages' activations (or on the token itself when there is one stage).
  Only what the loop's part at hand reads need be given."""
  inputs = base.DecodeInputs(
      tokens_to_logits=lambda token, cache: step_input(cache),
      cache=cache,
      first_token=first_token,
      max_new_tokens=max_new_tokens,
      length=length,
      reorder_cache=None,
  )
  return decoder.loop(inputs, eos_id)


class StagedDecoder:
  """`decoder` (greedy or sampling) over `staged`, for rows of `length` tokens."""

  def __init__(self, staged: StagedModel, decoder: Sampling, eos_id: int, length: int):
    self.staged, self.decoder = staged, decoder
    last = staged.config.stages - 1
    runs = [_cached_run(stage, length) for stage in staged.modules]

    def prefill(k, params, x, prefill_length):
      out, cache = models.prefill_cache(runs[k], params, x, prefill_length)
      return cache if k == last else (out, cache)  # the last stage's logits are not needed

    def step(k, params, x, cache):
      return models.cached_step(runs[k], params, x, cache, length)

    def start(cache, input_tokens, rng):
      max_new_tokens = length - cache["position"]
      first_token = models.first_prompt_input(input_tokens, cache)
      loop = _loop(decoder, eos_id, length, max_new_tokens, cache=cache, first_token=first_token)
      return loop.start(rng), max_new_tokens

    def last_step(params, carry, x, max_new_tokens):
      def step_input(cache):
        out, cache = models.cached_step(runs[last], params, x, cache, length)
        return out[:, -1], cache

      return _loop(decoder, eos_id, length, max_new_tokens, step_input=step_input).step(carry)

    def running(carry, max_new_tokens):
      return _loop(decoder, eos_id, length, max_new_tokens).running(carry)

    compile_on = lambda k, fn: staged.partitioners[k].compile(fn, None, None)
    self._prefill = [compile_on(k, functools.partial(prefill, k)) for k in range(last + 1)]
    self._step = [compile_on(k, functools.partial(step, k)) for k in range(last)]
    self._start = compile_on(last, start)
    self._last_step = compile_on(last, last_step)
    self._running = compile_on(last, running)

  def __call__(
      self, input_tokens: np.ndarray, causal_attention: np.ndarray, rng: jax.Array
  ) -> tuple[jax.Array, jax.Array]:
    """Prompt rows as Model.prompt_batch gives them -> each row's best decode [B, L] and its
    score [B], as Model.predict_batch."""
    staged, params = self.staged, self.staged.params
    last = staged.config.stages - 1
    per_example = self.decoder.rows_per_example
    input_tokens = np.repeat(np.asarray(input_tokens), per_example, axis=0)
    prefill_length = np.repeat(
        np.sum(causal_attention, axis=-1).astype(np.int32), per_example, axis=0
    )
    prefill = lambda k, x: self._prefill[k](
        params[k], staged.on_stage(k, x), staged.on_stage(k, prefill_length)
    )
    x, caches = input_tokens, []  # the earlier stages' caches; the last's is in the carry
    for k in range(last):
      x, cache = prefill(k, x)
      caches.append(cache)
    carry, max_new_tokens = self._start(
        prefill(last, x), staged.on_stage(last, input_tokens), staged.on_stage(last, rng)
    )
    while bool(self._running(carry, max_new_tokens)):
      x = carry[0].previous_token[:, None]
      for k in range(last):
        x, caches[k] = self._step[k](params[k], staged.on_stage(k, x), caches[k])
      carry = self._last_step(params[last], carry, staged.on_stage(last, x), max_new_tokens)
    sequences, scores = self.decoder.results(carry[0], carry[1])
    return sequences[:, 0], scores[:, 0]
