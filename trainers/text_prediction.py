"""Continuations of text prompts (greedy or sampled), for the end of a run and quick looks."""

from typing import Callable, Optional, Sequence

import jax

from trainers import partitioning


def continue_prompts(
    model,
    params,
    partitioner: partitioning.Partitioner,
    vocab,
    prompts: Sequence[str],
    length: int = 64,
    decoder: Optional[Callable] = None,
    seed: int = 0,
) -> list[str]:
  """Continuations (decoded text) of each prompt, `length` tokens in all.

  `decoder` is a model_zoo.decoding decoder (default greedy); a sampler draws from
  PRNGKey(`seed`), so the same checkpoint gives the same text.
  """
  dp = partitioner.data_parallel_size
  rows = -(-len(prompts) // dp) * dp
  batch = model.prompt_batch([vocab.encode(p) for p in prompts], rows, length)
  per_process = rows // jax.process_count()
  local = {
      k: v[jax.process_index() * per_process : (jax.process_index() + 1) * per_process]
      for k, v in batch.items()
  }
  tokens = partitioner.apply_gathered(
      jax.jit(lambda p, b: model.predict_batch(p, b, jax.random.PRNGKey(seed), decoder)[0]),
      params,
      local,
  )
  return [decode_tokens(vocab, row, model.eos_id) for row in tokens[: len(prompts)]]


def decode_tokens(vocab, ids: Sequence[int], eos_id: int) -> str:
  """Text of a token row, without padding (0) and EOS."""
  return vocab.decode([int(t) for t in ids if t > 0 and t != eos_id])
