"""A frozen LM reading and writing SPAE tokens in context (SPAE's in-context use).

Understanding: a few-shot prompt of "image tokens, marker, word, separator" shots and a
query "image tokens, marker"; the LM's answer is the candidate word it finds most likely
(rank classification, as the Flan probes score options). Generation: a prompt ending in a
marker, and the LM continues with image tokens only (every id outside the SPAE codebook
masked), which SPAE's decoder turns into an image. Everything here is LM ids: the caller
tokenizes the words and markers with the LM's vocabulary.
"""

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from model_zoo.decoding import base
from model_zoo.errors import ConfigError

Ids = Sequence[int]


def few_shot_prompt(
    shots: Sequence[tuple[Ids, Ids]], query: Ids, marker: Ids, separator: Ids
) -> list[int]:
  """shot_1 image ids, marker, shot_1 word ids, separator, ..., query image ids, marker."""
  prompt: list[int] = []
  for image, word in shots:
    prompt += [*image, *marker, *word, *separator]
  return prompt + [*query, *marker]


def rank_classify(
    lm,
    lm_params: Any,
    prompts: Sequence[Ids],
    candidates: Sequence[Ids],
    rows_per_batch: int = 64,
) -> np.ndarray:
  """log p(candidate | prompt) [prompts, candidates] in nats under the LM (a Model of
  model_zoo.models); the answer is each row's argmax. Rows go `rows_per_batch` at a time at
  one length, so one compiled function serves every call."""
  if not prompts or not candidates:
    raise ConfigError("rank_classify needs at least one prompt and one candidate.")
  pairs = [(list(p), list(c)) for p in prompts for c in candidates]
  length = max(len(p) + len(c) for p, c in pairs)
  score = jax.jit(lm.score_batch)
  scores = []
  for start in range(0, len(pairs), rows_per_batch):
    chunk = pairs[start : start + rows_per_batch]
    batch = lm.scoring_batch([p for p, _ in chunk], [c for _, c in chunk], rows_per_batch, length)
    scores.append(np.asarray(jax.device_get(score(lm_params, batch)))[: len(chunk)])
  return np.concatenate(scores).reshape(len(prompts), len(candidates))


def codebook_only(first_code_id: int, code_stop: int) -> base.LogitCallback:
  """A logit callback that leaves the LM only the ids in [first_code_id, code_stop)."""

  def callback(log_probs: jax.Array, state: base.DecodingState) -> jax.Array:
    del state
    ids = jnp.arange(log_probs.shape[-1])
    allowed = (ids >= first_code_id) & (ids < code_stop)
    return jnp.where(allowed, log_probs, -jnp.inf)

  return callback


def generate_image_tokens(
    lm,
    lm_params: Any,
    prompts: Sequence[Ids],
    num_tokens: int,
    code_range: tuple[int, int],
    decoder: Any,
    rng: Optional[jax.Array] = None,
) -> np.ndarray:
  """[prompts, num_tokens] ids the LM writes after each prompt, each in the codebook
  [code_range[0], code_range[1]) (no EOS can end a row early), with `decoder` (a
  model_zoo.decoding Sampling: greedy or sampled) whose logit callback this sets."""
  if getattr(decoder, "logit_callback", None) is not None:
    raise ConfigError(
        "generate_image_tokens sets the decoder's logit_callback (codebook ids only); give "
        "a decoder without one."
    )
  decoder = base.replaced(decoder, logit_callback=codebook_only(*code_range))
  length = max(len(p) for p in prompts) + 1 + num_tokens  # BOS, prompt, the image
  batch = lm.prompt_batch([list(p) for p in prompts], len(prompts), length)
  predict: Callable = jax.jit(lambda p, b, r: lm.predict_batch(p, b, r, decoder=decoder)[0])
  rng = jax.random.PRNGKey(0) if rng is None else rng
  return np.asarray(jax.device_get(predict(lm_params, batch, rng)))[:, :num_tokens]
