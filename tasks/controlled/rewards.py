"""Rewards of sampled continuations, looked up by name: what a prefix scorer learns to predict.

A reward maps a batch of rollouts to one float64 each, so a slow scorer (a classifier) runs
once per batch. Names are plain ("length") or carry a parameter after a colon
("langid:de"); `register` adds either kind, so a user's module can bring its own reward.
No TensorFlow here: `jax_reward` lets a jit-compiled decoder call a reward on the host.
"""

import dataclasses
import functools
import math
from typing import Callable, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from model_zoo.errors import ConfigError
from tasks.langid import model as langid_model
from tasks.langid import train as langid_train
from tasks.parallel import corpus

PROBABILITY_FLOOR = 1e-6  # keeps log p finite for a text LangID is sure is another language


@dataclasses.dataclass(frozen=True)
class Rollout:
  """One sampled continuation of `prompt`, with the room the sampler had for it."""

  prompt: str
  output: str
  num_tokens: int  # generated tokens, EOS included
  max_new_tokens: int  # T_max: how many tokens the sampler could have generated

  def __post_init__(self):
    if self.max_new_tokens < 1 or self.num_tokens < 0:
      raise ConfigError(
          f"a rollout needs max_new_tokens >= 1 and num_tokens >= 0; got max_new_tokens="
          f"{self.max_new_tokens}, num_tokens={self.num_tokens}. Pass the sampler's room "
          "for new tokens (e.g. --max_new_tokens of tools.score_rollouts)."
      )


Reward = Callable[[Sequence[Rollout]], np.ndarray]  # rollouts -> float64 [len(rollouts)]
# Called with no argument for a plain name, with the text after the colon for a prefix.
RewardFactory = Callable[..., Reward]

_REGISTRY: dict[str, RewardFactory] = {}


def register(name_or_prefix: str, factory: RewardFactory) -> None:
  """Makes `get(name)` build a reward with `factory`; a later registration replaces one.

  A plain name ("length") gets `factory()`; a prefix ending in a colon ("langid:") gets
  `factory(parameter)` for every name "langid:<parameter>".
  """
  head, colon, tail = name_or_prefix.partition(":")
  if not head or tail:
    raise ConfigError(
        f"cannot register the reward {name_or_prefix!r}: expected a plain name such as "
        "'length', or a prefix ending in a colon such as 'langid:' (its names then carry a "
        "parameter, 'langid:de')."
    )
  _REGISTRY[head + colon] = factory


def names() -> list[str]:
  """The registered names; one ending in a colon is a prefix that takes a parameter."""
  return sorted(_REGISTRY)


def get(name: str) -> Reward:
  """The reward `name` ("length", "langid:de", or one a user registered)."""
  head, colon, parameter = name.partition(":")
  factory = _REGISTRY.get(head + colon)
  if factory is None:
    shown = ", ".join(n + "<parameter>" if n.endswith(":") else n for n in names())
    raise ConfigError(
        f"no reward named {name!r}; registered: {shown}. Register your own with "
        "tasks.controlled.rewards.register('my_reward', factory) in a module you import "
        "(a factory returns a function of a list of Rollouts -> float64 array)."
    )
  if colon and not parameter:
    raise ConfigError(f"the reward {name!r} needs a parameter after the colon, e.g. 'langid:de'")
  return factory(parameter) if colon else factory()


def length_reward() -> Reward:
  """log(T / T_max) (Mudgal et al.'s length reward): 0 for a rollout that used all its room.

  T is the rollout's token count clipped to [1, T_max], so an empty rollout scores log(1/T_max).
  """

  def reward(rollouts: Sequence[Rollout]) -> np.ndarray:
    return np.asarray(
        [
            math.log(min(max(r.num_tokens, 1), r.max_new_tokens) / r.max_new_tokens)
            for r in rollouts
        ],
        np.float64,
    )

  return reward


@functools.cache
def _langid() -> langid_model.LangIdModel:
  """Trained (or read from the cache) on first use, once per process."""
  return langid_train.load_or_train()


def langid_reward(lang: str) -> Reward:
  """log P(output is in `lang`) under podzoo's LangID model, P floored at PROBABILITY_FLOOR.

  An empty (or all-space) output is in no language: it gets log(PROBABILITY_FLOOR).
  """
  if lang not in corpus.LANGUAGES:
    raise ConfigError(
        f"langid:{lang}: the LangID model knows the languages {', '.join(corpus.LANGUAGES)}; "
        f"got {lang!r}. Use one of them, e.g. 'langid:de'."
    )
  column = corpus.LANGUAGES.index(lang)

  def reward(rollouts: Sequence[Rollout]) -> np.ndarray:
    probabilities = np.zeros(len(rollouts), np.float64)
    texts = [i for i, r in enumerate(rollouts) if r.output.strip()]
    if texts:
      scored = _langid().probabilities([rollouts[i].output for i in texts])
      probabilities[texts] = scored[:, column]
    return np.log(np.maximum(probabilities, PROBABILITY_FLOOR))

  return reward


register("length", length_reward)
register("langid:", langid_reward)


class TextDecoder(Protocol):
  """What a reward needs of a seqio vocabulary (without importing SeqIO's TensorFlow)."""

  def decode(self, ids: Sequence[int]) -> str:
    ...


def rollouts_from_tokens(
    vocabulary: TextDecoder,
    output_ids: np.ndarray,
    eos_id: int,
    max_new_tokens: np.ndarray,
    prompts: Sequence[str] | None = None,
) -> list[Rollout]:
  """Rollouts of sampled ids [N, L] (0 is padding): each row's text up to its first EOS.

  A row's `num_tokens` counts its EOS (index of the EOS + 1), or, with no EOS (the room ran
  out), its nonzero tokens.
  """
  output_ids, max_new_tokens = np.asarray(output_ids), np.asarray(max_new_tokens)
  rows = len(output_ids)
  prompts = [""] * rows if prompts is None else prompts
  if output_ids.ndim != 2 or max_new_tokens.shape != (rows,) or len(prompts) != rows:
    raise ConfigError(
        f"rollouts_from_tokens needs output_ids [N, L], max_new_tokens [N] and N prompts; got "
        f"shapes {output_ids.shape} and {max_new_tokens.shape} and {len(prompts)} prompts"
    )
  rollouts = []
  for row, room, prompt in zip(output_ids, max_new_tokens, prompts):
    ends = np.flatnonzero(row == eos_id)
    generated = row[: ends[0]] if len(ends) else row
    num_tokens = int(ends[0]) + 1 if len(ends) else int(np.count_nonzero(row))
    text = vocabulary.decode([int(t) for t in generated if t != 0])
    rollouts.append(Rollout(prompt, text, num_tokens, int(room)))
  return rollouts


def jax_reward(
    reward: Reward, vocabulary: TextDecoder, eos_id: int
) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """`reward` of sampled ids [N, L] int32 given each row's room [N], as float32 [N], callable
  inside `jax.jit` (a host callback): e.g. a best-of-K decoder keeping the best sample."""

  def on_host(sequences: np.ndarray, max_new_tokens: np.ndarray) -> np.ndarray:
    rollouts = rollouts_from_tokens(vocabulary, sequences, eos_id, max_new_tokens)
    return np.asarray(reward(rollouts), np.float32)

  def scored(sequences: jax.Array, max_new_tokens: jax.Array) -> jax.Array:
    result = jax.ShapeDtypeStruct(sequences.shape[:1], jnp.float32)
    return jax.pure_callback(on_host, result, sequences, max_new_tokens, vmap_method="sequential")

  return scored
