"""Controlled-decoding rewards: the length and LangID rewards against hand computations and the
LangID model itself, the registry's errors, token rows -> rollouts, and the jit-callable form."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio

from model_zoo.errors import ConfigError
from tasks.controlled import rewards
from tasks.langid import train as langid_train
from tasks.parallel import corpus

BYTES = seqio.ByteVocabulary()  # id = byte + 3; 0 pad, 1 EOS
EOS = 1


def byte_ids(text: str) -> list[int]:
  return [b + 3 for b in text.encode("utf-8")]


def rollout(output: str = "", num_tokens: int = 1, max_new_tokens: int = 8) -> rewards.Rollout:
  return rewards.Rollout("prompt", output, num_tokens, max_new_tokens)


@pytest.fixture
def registry(monkeypatch):
  """The registry as shipped, restored after the test."""
  monkeypatch.setattr(rewards, "_REGISTRY", dict(rewards._REGISTRY))


def test_length_reward_is_log_of_the_used_share_of_the_room():
  cases = [(1, 8), (3, 8), (8, 8), (5, 5), (2, 64)]
  got = rewards.get("length")([rollout(num_tokens=t, max_new_tokens=m) for t, m in cases])
  assert got.dtype == np.float64
  np.testing.assert_allclose(got, [math.log(t / m) for t, m in cases], rtol=0, atol=1e-15)
  # Clipped to [1, T_max]: no token scores as one, more than the room as the room.
  clipped = rewards.get("length")([rollout(num_tokens=0), rollout(num_tokens=20)])
  np.testing.assert_allclose(clipped, [math.log(1 / 8), 0.0], rtol=0, atol=1e-15)


def test_langid_reward_is_the_floored_log_probability_of_the_language():
  german = corpus.monolingual("de", "validation")[:6]
  russian = corpus.monolingual("ru", "validation")[:6]
  texts = german + russian + [""]
  got = rewards.get("langid:de")([rollout(text) for text in texts])
  probabilities = langid_train.load_or_train().probabilities(texts[:-1]).astype(np.float64)
  p_de = probabilities[:, corpus.LANGUAGES.index("de")]
  floor = math.log(1e-6)
  expected = [math.log(max(p, 1e-6)) for p in p_de] + [floor]  # "" is in no language
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert got[-1] == floor
  assert got[:6].mean() > math.log(0.5) > got[6:12].max()  # German reads as German
  assert (p_de[6:] < 1e-6).any() and got[6:12].min() == floor  # the floor was exercised
  p_ru = probabilities[:, corpus.LANGUAGES.index("ru")]
  np.testing.assert_allclose(
      rewards.get("langid:ru")([rollout(text) for text in russian]),
      np.log(np.maximum(p_ru[6:], 1e-6)),
      rtol=1e-6,
  )


def test_langid_model_is_loaded_lazily_and_once(monkeypatch):
  loads = []
  real_load = langid_train.load_or_train
  monkeypatch.setattr(langid_train, "load_or_train", lambda: loads.append(1) or real_load())
  rewards._langid.cache_clear()
  try:
    reward = rewards.get("langid:fr")
    reward([rollout("")])
    assert loads == []  # nothing to classify: nothing loaded
    reward([rollout("Bonjour le monde")])
    rewards.get("langid:de")([rollout("Guten Tag")])
    assert loads == [1]
  finally:
    rewards._langid.cache_clear()


def test_unknown_names_list_the_registered_ones():
  with pytest.raises(ConfigError) as e:
    rewards.get("lenght")
  message = str(e.value)
  assert "'lenght'" in message and "langid:<parameter>, length" in message
  assert "rewards.register(" in message
  with pytest.raises(ConfigError, match=r"'en', 'de'|en, de, es"):
    rewards.get("langid:xx")
  with pytest.raises(ConfigError, match="needs a parameter"):
    rewards.get("langid:")
  with pytest.raises(ConfigError, match="no reward named 'length:3'"):
    rewards.get("length:3")


def test_a_user_registers_plain_and_parametrised_rewards(registry):
  rewards.register("chars", lambda: lambda rs: np.array([len(r.output) for r in rs], float))
  rewards.register("has:", lambda word: lambda rs: np.array([float(word in r.output) for r in rs]))
  assert rewards.names() == ["chars", "has:", "langid:", "length"]
  batch = [rollout("a cat"), rollout("dog")]
  np.testing.assert_array_equal(rewards.get("chars")(batch), [5, 3])
  np.testing.assert_array_equal(rewards.get("has:cat")(batch), [1, 0])
  for bad in ("", ":", "a:b"):
    with pytest.raises(ConfigError, match="cannot register"):
      rewards.register(bad, lambda: None)


def test_rollout_needs_room():
  with pytest.raises(ConfigError, match="max_new_tokens >= 1"):
    rollout(max_new_tokens=0)


def test_rollouts_from_tokens_stop_at_the_first_eos():
  rows = [
      byte_ids("Hallo") + [EOS] + byte_ids("x") + [EOS],  # text, EOS, then junk
      byte_ids("Welt") + [0, 0, 0, 0, 0],  # no EOS: the room ran out (padding after)
      [EOS] + [0] * 9,  # EOS first: empty
  ]
  ids = np.array([row + [0] * (10 - len(row)) for row in rows], np.int32)
  got = rewards.rollouts_from_tokens(BYTES, ids, EOS, np.array([10, 4, 10]), ["a", "b", "c"])
  assert got == [
      rewards.Rollout("a", "Hallo", 6, 10),
      rewards.Rollout("b", "Welt", 4, 4),
      rewards.Rollout("c", "", 1, 10),
  ]
  assert [r.prompt for r in rewards.rollouts_from_tokens(BYTES, ids, EOS, np.ones(3))] == [""] * 3
  with pytest.raises(ConfigError, match="max_new_tokens"):
    rewards.rollouts_from_tokens(BYTES, ids, EOS, np.ones(2))


def test_jax_reward_runs_under_jit():
  rows = [byte_ids("abc") + [EOS, 0, 0], byte_ids("abcdef"), [EOS] + [0] * 5]
  sequences = jnp.asarray(rows, jnp.int32)
  room = jnp.asarray([8, 6, 4], jnp.int32)
  length = jax.jit(rewards.jax_reward(rewards.get("length"), BYTES, EOS))(sequences, room)
  assert length.dtype == jnp.float32 and length.shape == (3,)
  np.testing.assert_allclose(length, [math.log(4 / 8), 0.0, math.log(1 / 4)], rtol=1e-6)
  chars = rewards.jax_reward(lambda rs: np.array([len(r.output) for r in rs], float), BYTES, EOS)
  np.testing.assert_array_equal(jax.jit(chars)(sequences, room), [3, 6, 0])
