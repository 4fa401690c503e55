"""The prefix scorer's values, its CD-FUDGE and CD-Q losses (against NumPy), and training.

The losses are recomputed in float64 NumPy from the model's own values and the frozen base
model's logits, position by position as the paper writes them; a learnable reward then has
to be learnt well enough that token-wise CD samples get more of it than the base model.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import meta

from model_zoo import dense, feature_converters, prefix_scorer
from model_zoo.decoding import controlled, sampling
from model_zoo.errors import ConfigError
from tests.model_zoo import tiny_lm
from tests.model_zoo.decoding import common

CFG = common.V16
EOS = common.EOS


@functools.lru_cache(maxsize=None)
def scorer(objective: str = "cd_fudge") -> prefix_scorer.PrefixScorerModel:
  return prefix_scorer.PrefixScorerModel(prefix_scorer.PrefixScorerLM(CFG), objective=objective)


def rollout_batch(prompts, continuations, rewards, length: int) -> dict:
  """The prefix_scorer layout: prompt + continuation, loss on the continuation, the row's
  reward at every non-padding position."""
  batch = feature_converters.DecoderFeatureConverter.scoring_batch(
      prompts, continuations, len(prompts), length
  )
  present = (batch["decoder_target_tokens"] > 0).astype(np.float32)
  batch["decoder_rewards"] = present * np.asarray(rewards, np.float32)[:, None]
  return batch


PROMPTS = [[2, 3], [], [5, 6, 7], [4]]
CONTINUATIONS = [[9, 8, EOS], [3, 3, 3, 3, EOS], [10], [11, 12, 13, EOS]]
REWARDS = [0.5, -1.0, 2.0, 0.25]


def init(model, seed=0):
  batch = rollout_batch(PROMPTS, CONTINUATIONS, REWARDS, 8)
  return meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(seed), batch))


def np_softmax(x):
  return np.exp(common.log_softmax(x))


def reference_terms(values, targets, weights, rewards, base_logits=None):
  """½ (V(x, y_<=t) - target_t)^2 per weighted position, by a loop over positions."""
  rows, length = targets.shape
  out = np.zeros((rows, length))
  for b in range(rows):
    weighted = [i for i in range(length) if weights[b, i] > 0]
    for i in weighted:
      value = values[b, i, targets[b, i]]
      if base_logits is None or i == weighted[-1]:
        target = rewards[b, i]
      else:
        target = np.dot(np_softmax(base_logits[b, i + 1]), values[b, i + 1])
      out[b, i] = 0.5 * (value - target) ** 2
  return out


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["cd_fudge", "cd_q"])
def test_losses_equal_numpy(objective):
  model = scorer(objective)
  params = init(model)
  batch = rollout_batch(PROMPTS, CONTINUATIONS, REWARDS, 8)
  values = np.asarray(model._apply({"params": params}, batch), np.float64)
  assert values.shape == (4, 8, CFG.vocab_size)
  base_logits = None
  if objective == "cd_q":
    assert set(params) == set(init(scorer("cd_fudge"))) | {prefix_scorer.BASE}
    base_logits = np.asarray(
        dense.DecoderOnlyLM(CFG).apply(
            {"params": params[prefix_scorer.BASE]},
            batch["decoder_input_tokens"],
            batch["decoder_target_tokens"],
        ),
        np.float64,
    )
  weights = batch["decoder_loss_weights"]
  terms = reference_terms(
      values, batch["decoder_target_tokens"], weights, batch["decoder_rewards"], base_logits
  )
  loss, metrics = jax.jit(model.loss_fn)(params, batch)
  assert float(loss) == pytest.approx(terms.sum() / weights.sum(), rel=1e-5)
  assert float(metrics["reward"].value()) == pytest.approx(
      np.sum(batch["decoder_rewards"] * weights) / weights.sum(), rel=1e-6
  )


@pytest.mark.slow
def test_cd_q_targets_take_no_gradient():
  """The gradient equals that of the same squared error with the targets held constant."""
  model = scorer("cd_q")
  params = init(model)
  batch = rollout_batch(PROMPTS, CONTINUATIONS, REWARDS, 8)
  weights = jnp.asarray(batch["decoder_loss_weights"], jnp.float32)
  values = model._apply({"params": params}, batch)
  base_logits = dense.DecoderOnlyLM(CFG).apply(
      {"params": params[prefix_scorer.BASE]},
      batch["decoder_input_tokens"],
      batch["decoder_target_tokens"],
  )
  fixed = prefix_scorer.cd_q_targets(values, base_logits, weights, batch["decoder_rewards"])

  def held(params):
    v = model._apply({"params": params}, batch)
    taken = prefix_scorer.taken_values(v, batch["decoder_target_tokens"])
    return jnp.sum(0.5 * jnp.square(taken - fixed) * weights) / jnp.sum(weights)

  got = jax.grad(lambda p: model.loss_fn(p, batch)[0])(params)
  want = jax.grad(held)(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), got, want)
  assert float(jnp.max(jnp.abs(got[prefix_scorer.BASE]["token_embedder"]["embedding"]))) == 0.0


def test_values_decode_through_the_kv_cache_as_in_one_pass():
  module = prefix_scorer.PrefixScorerLM(tiny_lm.config(scan_layers=False))
  tokens = jnp.asarray(np.random.RandomState(0).randint(2, 32, size=(2, 6)), jnp.int32)
  params = meta.unbox(module.init(jax.random.PRNGKey(1), tokens, tokens))["params"]
  assert set(params) == {"token_embedder", "decoder", "value_head"}
  full = np.asarray(module.apply({"params": params}, tokens, tokens))
  stepped = tiny_lm.decode_token_by_token(module, params, tokens)
  np.testing.assert_allclose(stepped, full, atol=1e-5)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: prefix_scorer.PrefixScorerModel(
                prefix_scorer.PrefixScorerLM(CFG), objective="q"
            ),
            "objective='q'",
        ),
        (
            lambda: prefix_scorer.PrefixScorerModel(dense.DecoderOnlyLM(CFG)),
            "needs a PrefixScorerLM",
        ),
        (
            lambda: prefix_scorer.PrefixScorerModel(
                prefix_scorer.PrefixScorerLM(CFG),
                objective="cd_q",
                base_config=dataclasses.replace(CFG, vocab_size=32),
            ),
            "same vocabulary",
        ),
    ],
)
def test_bad_settings_are_named(make, message):
  with pytest.raises(ConfigError, match=message):
    make()


def test_scoring_and_training_without_rewards_are_refused():
  model = scorer()
  params = init(model)
  batch = rollout_batch(PROMPTS, CONTINUATIONS, REWARDS, 8)
  with pytest.raises(ConfigError, match="values, not log-probabilities"):
    model.score_batch(params, batch)
  del batch["decoder_rewards"]
  with pytest.raises(ValueError, match="no decoder_rewards"):
    model.loss_fn(params, batch)


# --- training on a learnable reward ---------------------------------------------------------
LENGTH = 6


def favoured_fraction(tokens: np.ndarray, favoured: int) -> np.ndarray:
  """The reward: the fraction of generated tokens (EOS included) that are `favoured`."""
  lengths = common.generated_length(tokens)
  hits = np.array([(row[:n] == favoured).sum() for row, n in zip(tokens, lengths)])
  return hits / lengths


def middling_token(tokens: np.ndarray) -> int:
  """A token the base model samples now and then (about 1 in 10 generated tokens), so the
  rollouts show the reward varying and decoding has room to raise it."""
  lengths = common.generated_length(tokens)
  generated = np.concatenate([row[:n] for row, n in zip(tokens, lengths)])
  frequency = np.bincount(generated, minlength=CFG.vocab_size) / len(generated)
  frequency[[0, EOS]] = np.inf
  return int(np.argmin(np.abs(frequency - 0.1)))


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["cd_fudge", pytest.param("cd_q", marks=pytest.mark.slow)])
def test_a_trained_scorer_steers_decoding_towards_its_reward(objective):
  base_model, _, base_params = common.lm16()
  rows = 512
  prompts = common.decoder_only_batch([[]] * rows, LENGTH)
  predict = jax.jit(
      lambda p, b, rng, d: base_model.predict_batch(p, b, rng, decoder=d), static_argnums=3
  )
  rollouts = np.asarray(
      predict(base_params, prompts, jax.random.PRNGKey(0), sampling.Sampling())[0]
  )
  favoured = middling_token(rollouts)
  rewards = favoured_fraction(rollouts, favoured)
  continuations = [list(r[:n]) for r, n in zip(rollouts, common.generated_length(rollouts))]
  batch = rollout_batch([[]] * rows, continuations, rewards, LENGTH + 1)

  model = scorer(objective)
  params = init(model, seed=1)
  if objective == "cd_q":
    params = {**params, prefix_scorer.BASE: base_params}
  optimizer = optax.adam(3e-3)
  trainable = {k: v for k, v in params.items() if k != prefix_scorer.BASE}
  state = optimizer.init(trainable)

  @jax.jit
  def step(trainable, state):
    loss, grads = jax.value_and_grad(lambda t: model.loss_fn({**params, **t}, batch)[0])(trainable)
    updates, state = optimizer.update(grads, state)
    return optax.apply_updates(trainable, updates), state, loss

  losses = []
  for _ in range(150):
    trainable, state, loss = step(trainable, state)
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0]

  decoder = controlled.TokenwiseCD(scorers=[controlled.PrefixScorer(model, trainable, 8.0)])
  test_prompts = common.decoder_only_batch([[]] * rows, LENGTH)
  steered = np.asarray(
      jax.jit(lambda p, b, rng: base_model.predict_batch(p, b, rng, decoder=decoder))(
          base_params, test_prompts, jax.random.PRNGKey(1)
      )[0]
  )
  plain = np.asarray(
      predict(base_params, test_prompts, jax.random.PRNGKey(1), sampling.Sampling())[0]
  )
  base_reward = favoured_fraction(plain, favoured).mean()
  cd_reward = favoured_fraction(steered, favoured).mean()
  assert cd_reward > base_reward + 0.15, (base_reward, cd_reward)
