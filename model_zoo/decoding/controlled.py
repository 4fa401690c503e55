"""Controlled decoding (Mudgal et al., 2024): steering a frozen base LM with prefix scorers.

A prefix scorer V(x, y_<=t, z) (model_zoo/prefix_scorer.py) estimates, for every next token
z at once, the reward a continuation starting y_<=t z will get. The decoders here run it
beside the base model in the same loop, each model with its own KV cache:

  - `TokenwiseCD` samples every token from softmax(log p_base + sum_i lambda_i V_i) over the
    whole vocabulary (optionally over the base model's top-k tokens only);
  - `BlockwiseCD` samples K continuations of M tokens from the base model, keeps the one whose
    prefix value sum_i lambda_i V_i(x, y_<=t) is highest, copies it to all K rows and repeats
    until EOS;
  - `BestOfK`, the baseline: K samples from the base model, the one with the highest reward.

Several scorers with their weights are one objective, sum_i lambda_i V_i, with no retraining
(multi-objective control). The scorers see the same rows as the base model: the Model API
calls `prepare_inputs(inputs, batch)` with the expanded batch, which prefills every scorer's
cache from it. A decoder's scorer parameters are `params`; `with_params` rebuilds it with
other arrays (e.g. tracers), so a jitted caller can pass them as sharded arguments.
"""

import dataclasses
from typing import Any, Callable, Sequence

import gin
import jax
import jax.numpy as jnp
from jax import lax

from model_zoo.decoding import base, filters, sampling
from model_zoo.errors import ConfigError

# (generated sequences [N, L], each row's room [N]) -> reward [N] float32
SequenceReward = Callable[[jax.Array, jax.Array], jax.Array]


@gin.configurable
@dataclasses.dataclass(frozen=True)
class PrefixScorer:
  """A trained prefix scorer with its weight lambda: `model.decode_inputs(params, batch)` steps
  give values [N, V] (model_zoo.prefix_scorer.PrefixScorerModel)."""

  model: Any
  params: Any
  weight: float = 1.0

  def __post_init__(self):
    if not self.weight >= 0:
      raise ConfigError(
          f"PrefixScorer.weight={self.weight} must be >= 0: lambda scales how strongly the "
          "decoder follows the scorer's reward. To steer away from an attribute, train the "
          "scorer on the negated reward."
      )


def guided_inputs(
    base_inputs: base.DecodeInputs,
    scorers: Sequence[tuple[base.DecodeInputs, float]],
    *,
    steer: bool,
    top_k: int = 0,
) -> base.DecodeInputs:
  """The base model's DecodeInputs with prefix scorers beside it, one cache each.

  Each step also keeps the combined values sum_i lambda_i V_i [N, V] of the next token in the
  cache ("values"): after a token is chosen, its entry is the value of the prefix it ends.
  With `steer`, the step's logits are log p_base + those values (token-wise CD; with `top_k`
  > 0 only the base model's top-k tokens stay possible); without, the base model's own.
  """
  logits_shape = jax.eval_shape(
      base_inputs.tokens_to_logits, base_inputs.first_token[:, None], base_inputs.cache
  )[0].shape
  for number, (inputs, _) in enumerate(scorers):
    step = jax.eval_shape(inputs.tokens_to_logits, inputs.first_token[:, None], inputs.cache)
    values_shape = step[0].shape
    if values_shape != logits_shape:
      raise ConfigError(
          f"Prefix scorer {number} gives values of shape {values_shape} per step but the base "
          f"model's logits are {logits_shape}: a prefix scorer must share the base model's "
          "vocabulary (TransformerConfig.vocab_size) and see the same rows."
      )
    if inputs.length != base_inputs.length:
      raise ConfigError(
          f"Prefix scorer {number} decodes {inputs.length} positions, the base model "
          f"{base_inputs.length}: they must read the same batch."
      )

  def tokens_to_logits(token, cache):
    logits, base_cache = base_inputs.tokens_to_logits(token, cache["base"])
    values, scorer_caches = jnp.zeros(logits_shape, jnp.float32), []
    for (inputs, weight), scorer_cache in zip(scorers, cache["scorers"]):
      scorer_values, scorer_cache = inputs.tokens_to_logits(token, scorer_cache)
      values = values + weight * scorer_values.astype(jnp.float32)
      scorer_caches.append(scorer_cache)
    if steer:
      log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
      logits = filters.top_k_mask(log_probs, top_k) + values
    new_cache = {"base": base_cache, "scorers": tuple(scorer_caches), "values": values}
    return logits, new_cache

  def reorder_cache(cache, index):
    return {
        "base": base_inputs.reorder_cache(cache["base"], index),
        "scorers": tuple(
            inputs.reorder_cache(c, index) for (inputs, _), c in zip(scorers, cache["scorers"])
        ),
        "values": jnp.take(cache["values"], index, axis=0),
    }

  return dataclasses.replace(
      base_inputs,
      tokens_to_logits=tokens_to_logits,
      cache={
          "base": base_inputs.cache,
          "scorers": tuple(inputs.cache for inputs, _ in scorers),
          "values": jnp.zeros(logits_shape, jnp.float32),
      },
      reorder_cache=reorder_cache,
  )


def _check_guided(inputs: base.DecodeInputs, decoder: str) -> None:
  if not (isinstance(inputs.cache, dict) and "scorers" in inputs.cache):
    raise ValueError(
        f"{decoder} needs its prefix scorers beside the base model: call it through "
        "Model.predict_batch, which runs its prepare_inputs(inputs, batch) first."
    )


@dataclasses.dataclass(frozen=True)
class _Guided:
  """What the value-guided decoders share: their scorers, and how they join the base model."""

  scorers: Sequence[PrefixScorer] = ()

  def __post_init__(self):
    if not self.scorers:
      raise ConfigError(
          f"{type(self).__name__}.scorers is empty; give it at least one prefix scorer, e.g. "
          f"{type(self).__name__}.scorers = [@restored_prefix_scorer()]."
      )
    object.__setattr__(self, "scorers", tuple(self.scorers))

  _STEER = True  # token-wise: the values reweight the sampled distribution

  def prepare_inputs(self, inputs: base.DecodeInputs, batch) -> base.DecodeInputs:
    """Prefills every scorer's cache from `batch`, the rows the base model decodes."""
    scorers = [(s.model.decode_inputs(s.params, batch), s.weight) for s in self.scorers]
    return guided_inputs(inputs, scorers, steer=self._STEER, top_k=self._top_k())

  def _top_k(self) -> int:
    return 0

  @property
  def params(self) -> tuple:
    return tuple(s.params for s in self.scorers)

  def with_params(self, params: Sequence[Any]):
    scorers = tuple(base.replaced(s, params=p) for s, p in zip(self.scorers, params))
    return base.replaced(self, scorers=scorers)


def decoder_params(decoder) -> Any:
  """The parameters a decoder brings (its scorers'), or None: what a jitted caller passes in
  as an argument, so they are sharded inputs rather than compiled-in constants."""
  return getattr(decoder, "params", None)


def with_decoder_params(decoder, params: Any):
  """`decoder` holding `params` (e.g. the tracers of `decoder_params(decoder)`); as it is
  when params is None."""
  return decoder if params is None else decoder.with_params(params)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TokenwiseCD(_Guided):
  """Token-wise controlled decoding: each token from softmax(log p_base + sum_i lambda_i V_i).

  `top_k` > 0 keeps only the base model's top-k tokens (the paper's cheaper variant); 0, the
  default, reweights the whole vocabulary. `num_decodes` samples per example, best first by
  their log-probability under the controlled distribution.
  """

  top_k: int = 0
  num_decodes: int = 1

  def __post_init__(self):
    super().__post_init__()
    if self.top_k < 0:
      raise ConfigError(f"TokenwiseCD.top_k={self.top_k} must be >= 0 (0: the whole vocabulary).")
    self._sampler()  # validates num_decodes

  def _top_k(self) -> int:
    return self.top_k

  def _sampler(self) -> sampling.Sampling:
    return sampling.Sampling(temperature=1.0, num_decodes=self.num_decodes)

  @property
  def rows_per_example(self) -> int:
    return self.num_decodes

  def __call__(self, inputs: base.DecodeInputs, *, rng: jax.Array, eos_id: int):
    _check_guided(inputs, "TokenwiseCD")
    return self._sampler()(inputs, rng=rng, eos_id=eos_id)


def _best_rows(values: jax.Array, per_example: int) -> jax.Array:
  """[N] row values -> [N] row indices: every row of an example points at its best row."""
  best = jnp.argmax(values.reshape(-1, per_example), axis=1)
  starts = jnp.arange(best.shape[0]) * per_example
  return jnp.repeat(starts + best, per_example)


def _gather_rows(inputs, state: base.DecodingState, scores, rows):
  state = state.replace(
      sequences=jnp.take(state.sequences, rows, axis=0),
      previous_token=jnp.take(state.previous_token, rows, axis=0),
      done=jnp.take(state.done, rows, axis=0),
      cache=inputs.reorder_cache(state.cache, rows),
      extra=jnp.take(state.extra, rows, axis=0),
  )
  return state, jnp.take(scores, rows, axis=0)


def _pick(sequences, scores, rows, per_example: int):
  """One output per example, the rows' chosen ones: [B, 1, L], [B, 1]."""
  first = rows.reshape(-1, per_example)[:, 0]
  return jnp.take(sequences, first, axis=0)[:, None], jnp.take(scores, first, axis=0)[:, None]


@gin.configurable
@dataclasses.dataclass(frozen=True)
class BlockwiseCD(_Guided):
  """Blockwise controlled decoding: best of K base-model blocks of M tokens, block by block.

  Every row samples from the base model (at `temperature`); after each block of
  `block_length` tokens, and once more at the end, each example keeps the row whose prefix
  value sum_i lambda_i V_i(x, y_<=t) is highest (a row that ended keeps its value at EOS)
  and copies it, caches included, to its other rows. Returns that row per example, scored by
  its log-probability under the base model. K = 1 is plain sampling.
  """

  num_samples: int = 4
  block_length: int = 4
  temperature: float = 1.0

  _STEER = False

  def __post_init__(self):
    super().__post_init__()
    for name in ("num_samples", "block_length"):
      if getattr(self, name) < 1:
        raise ConfigError(f"BlockwiseCD.{name}={getattr(self, name)} must be >= 1.")
    sampling.Sampling(temperature=self.temperature)  # validates it

  @property
  def rows_per_example(self) -> int:
    return self.num_samples

  def __call__(self, inputs: base.DecodeInputs, *, rng: jax.Array, eos_id: int):
    _check_guided(inputs, "BlockwiseCD")
    k = self.num_samples
    choose = sampling.Sampling(temperature=self.temperature).choose

    def after_step(state, scores, generated):
      token_value = jnp.take_along_axis(
          state.cache["values"], state.previous_token[:, None], axis=-1
      )[:, 0]
      state = state.replace(extra=jnp.where(generated, token_value, state.extra))
      return lax.cond(
          state.step % self.block_length == 0,
          lambda: _gather_rows(inputs, state, scores, _best_rows(state.extra, k)),
          lambda: (state, scores),
      )

    rows = inputs.first_token.shape[0]
    state, scores = sampling.decode_loop(
        inputs,
        choose,
        rng=rng,
        eos_id=eos_id,
        extra=jnp.zeros((rows,), jnp.float32),
        after_step=after_step,
    )
    return _pick(state.sequences, scores, _best_rows(state.extra, k), k)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class BestOfK:
  """The baseline: K samples from the base model, the one the reward scores highest.

  `reward(sequences [N, L], room [N]) -> [N]` scores generated tokens (a host reward can be
  wrapped with jax.pure_callback). Returns that sample per example with its base log-prob.
  """

  reward: SequenceReward = None
  num_samples: int = 16
  temperature: float = 1.0

  def __post_init__(self):
    if self.reward is None:
      raise ConfigError("BestOfK.reward is None; bind the reward that ranks the K samples.")
    if self.num_samples < 1:
      raise ConfigError(f"BestOfK.num_samples={self.num_samples} must be >= 1.")
    sampling.Sampling(temperature=self.temperature)  # validates it

  @property
  def rows_per_example(self) -> int:
    return self.num_samples

  def __call__(self, inputs: base.DecodeInputs, *, rng: jax.Array, eos_id: int):
    state, scores = sampling.decode_loop(
        inputs,
        sampling.Sampling(temperature=self.temperature).choose,
        rng=rng,
        eos_id=eos_id,
    )
    rewards = self.reward(state.sequences, base.room(inputs)).astype(jnp.float32)
    return _pick(state.sequences, scores, _best_rows(rewards, self.num_samples), self.num_samples)
