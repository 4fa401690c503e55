"""Prefix scorers for controlled decoding (Mudgal et al., 2024), trained with CD-FUDGE or CD-Q.

A prefix scorer is a decoder-only LM trunk whose output head gives, in one forward pass, a
value V(x, y_<=t, z) for every next token z of the vocabulary ([batch, length, vocab] where
an LM gives logits): the reward a continuation of x that starts y_<=t z is expected to get
when the rest is sampled from the base model. Reading out the token that follows,
V(x, y_<=t) = values[t - 1, y_t]. Because it is an LM with another head, it decodes with
the same KV cache (`decode_inputs` steps give values) and trains, checkpoints and shards
like any zoo model; `trainers.initial_checkpoint` can start its trunk from the base LM.

It trains on rollouts y ~ p_base(. | x) with a reward r(x, y) (the `prefix_scorer` feature
converter: the reward at every position of the row), with one of the paper's objectives,
each per continuation token t (EOS included):

  cd_fudge: 1/2 (V(x, y_<=t) - r(x, y))^2
  cd_q:     1/2 (V(x, y_<=t) - target_t)^2, target_t = sum_z p_base(z | x, y_<=t)
            V(x, y_<=t, z) (no gradient) before the last token and r(x, y) at it.

CD-Q needs the base model's next-token distribution: the frozen base LM sits under
params["base"] (load it from the base checkpoint with InitialCheckpoint's assignment_map
and freeze it with trainable_only.frozen_patterns, as gin/runs/prefix_scorer.gin does).
The losses are means over continuation tokens, as the Trainer normalises every loss.
"""

from typing import Any, Optional

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp

from model_zoo import dense, feature_converters, models
from model_zoo.config import TransformerConfig
from model_zoo.errors import ConfigError
from model_zoo.layers import linear, norms, types

BASE = "base"  # the params subtree of the frozen base LM (CD-Q)
OBJECTIVES = ("cd_fudge", "cd_q")


class _ValueHead(nn.Module):
  """Final norm and a projection to one value per vocabulary entry, plus one shared bias.

  The projection starts small (values near the bias, 0), so a fresh scorer barely moves a
  decoder. The bias learns the rewards' level for every token at once: rollouts only ever
  show a few tokens after each prefix, and a bias per token would leave the level of the
  tokens they never show at 0, which outbids every observed token when rewards are negative
  (log-probabilities), so token-wise decoding would favour exactly the untrained ones."""

  config: TransformerConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    x = norms.RMSNorm(
        dtype=cfg.activation_dtype, param_dtype=cfg.parameter_dtype, name="final_norm"
    )(x)
    values = linear.DenseGeneral(
        cfg.vocab_size,
        ("embed", "vocab"),
        dtype=cfg.activation_dtype,
        param_dtype=cfg.parameter_dtype,
        scale=1e-2,
        name="values_dense",
    )(x)
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ()), ())
    values = values.astype(jnp.float32) + bias.astype(jnp.float32)
    return nn.with_logical_constraint(
        values, ("activation_batch", "activation_length", "activation_vocab")
    )


@gin.configurable
class PrefixScorerLM(dense.DecoderOnlyLM):
  """A DecoderOnlyLM whose head gives values V(x, y_<=t, z) [batch, length, vocab] in fp32."""

  def output_head(self, x: types.Array, embed) -> types.Array:
    del embed
    return _ValueHead(self.config, name="value_head")(x)


def taken_values(values: jax.Array, targets: jax.Array) -> jax.Array:
  """V(x, y_<=t) at each target position: the value of the token that follows [batch, length]."""
  return jnp.take_along_axis(values, targets[..., None], axis=-1)[..., 0]


def last_positions(weights: jax.Array) -> jax.Array:
  """[batch, length] bool: the last weighted position of each run of weighted positions (a
  rollout's final token)."""
  weighted = weights > 0
  following = jnp.concatenate([weighted[:, 1:], jnp.zeros_like(weighted[:, :1])], axis=1)
  return jnp.logical_and(weighted, jnp.logical_not(following))


def cd_q_targets(
    values: jax.Array, base_logits: jax.Array, weights: jax.Array, rewards: jax.Array
) -> jax.Array:
  """CD-Q's regression targets [batch, length], without gradient: the reward at a rollout's
  last token, else the base model's expectation of the next position's values,
  sum_z p_base(z | x, y_<=t) V(x, y_<=t, z)."""
  p_base = jax.nn.softmax(base_logits.astype(jnp.float32), axis=-1)
  expected = jnp.sum(p_base * values, axis=-1)  # at position i: E_z V(prefix to i, z)
  following = jnp.concatenate([expected[:, 1:], jnp.zeros_like(expected[:, :1])], axis=1)
  return jax.lax.stop_gradient(jnp.where(last_positions(weights), rewards, following))


@gin.configurable
class PrefixScorerModel(models.DecoderOnlyModel):
  """Trains a PrefixScorerLM on rollouts with CD-FUDGE or CD-Q (see the module doc).

  `base_config` sizes the frozen base LM CD-Q reads (default: the scorer's own config, a
  scorer the base model's size). Decoding with it gives values, not tokens: its decoders
  are model_zoo.decoding.controlled's, which take it as a PrefixScorer.
  """

  def __init__(
      self,
      module: nn.Module,
      *,
      objective: str = "cd_fudge",
      base_config: Optional[TransformerConfig] = None,
      **kwargs: Any,
  ):
    super().__init__(module, **kwargs)
    if objective not in OBJECTIVES:
      raise ConfigError(
          f"PrefixScorerModel.objective={objective!r}; expected one of {OBJECTIVES} "
          "(cd_fudge regresses every prefix on the rollout's reward; cd_q on the base model's "
          "expected next value)."
      )
    if not isinstance(module, PrefixScorerLM):
      raise ConfigError(
          f"PrefixScorerModel.module is a {type(module).__name__}; it needs a PrefixScorerLM "
          "(an LM trunk with a value head), e.g. PrefixScorerModel.module = @PrefixScorerLM()."
      )
    self.FEATURE_CONVERTER_CLS = feature_converters.PrefixScorerFeatureConverter
    self.objective = objective
    base_config = base_config or module.config
    if base_config.vocab_size != module.config.vocab_size:
      raise ConfigError(
          f"PrefixScorerModel.base_config.vocab_size={base_config.vocab_size} differs from the "
          f"scorer's TransformerConfig.vocab_size={module.config.vocab_size}: a prefix scorer "
          "values the base model's tokens, so both need the same vocabulary."
      )
    self.base = dense.DecoderOnlyLM(base_config) if objective == "cd_q" else None

  def init(self, rng: jax.Array, batch: models.Batch) -> models.Params:
    params = super().init(rng, batch)
    if self.base is None:
      return params
    base = self.base.init(rng, **self._module_inputs(batch))["params"]
    return {**params, BASE: base}

  def _apply(self, variables, batch, **kwargs):
    scorer = {k: v for k, v in variables["params"].items() if k != BASE}
    return super()._apply({**variables, "params": scorer}, batch, **kwargs)

  def decode_inputs(self, params, batch):
    return super().decode_inputs({k: v for k, v in params.items() if k != BASE}, batch)

  def _token_terms(self, params, batch, logits):
    values = logits  # the module's outputs are values
    if "decoder_rewards" not in batch:
      raise ValueError(
          f"A prefix scorer trains on rollouts with rewards; the batch has {sorted(batch)}, no "
          "decoder_rewards. Train it on a rollout task (tasks.controlled) with the "
          "'prefix_scorer' feature converter."
      )
    rewards = batch["decoder_rewards"].astype(jnp.float32)
    value = taken_values(values, batch["decoder_target_tokens"])
    if self.objective == "cd_fudge":
      target = rewards
    else:
      base_logits = self.base.apply(
          {"params": jax.lax.stop_gradient(params[BASE])},
          **self._module_inputs(batch),
          deterministic=True,
      )
      weights = feature_converters.loss_weights(batch)
      target = cd_q_targets(values, base_logits, weights, rewards)
    return 0.5 * jnp.square(value - target), {"value": value, "reward": rewards}

  def score_batch(self, params, batch, return_per_token: bool = False):
    raise ConfigError(
        "A prefix scorer gives values, not log-probabilities: score with the base model, or "
        "decode the base model with a controlled decoder (model_zoo.decoding.controlled)."
    )
