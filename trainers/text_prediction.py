"""Greedy continuations of text prompts, for the end of a run and quick looks at a model."""

from typing import Sequence

import jax

from trainers import partitioning


def continue_prompts(
    model,
    params,
    partitioner: partitioning.Partitioner,
    vocab,
    prompts: Sequence[str],
    length: int = 64,
) -> list[str]:
  """Greedy continuations (decoded text) of each prompt, `length` tokens in all."""
  dp = partitioner.data_parallel_size
  rows = -(-len(prompts) // dp) * dp
  batch = model.prompt_batch([vocab.encode(p) for p in prompts], rows, length)
  per_process = rows // jax.process_count()
  local = {
      k: v[jax.process_index() * per_process : (jax.process_index() + 1) * per_process]
      for k, v in batch.items()
  }
  tokens = partitioner.apply_gathered(
      jax.jit(lambda p, b: model.predict_batch(p, b)[0]), params, local
  )
  return [decode_tokens(vocab, row, model.eos_id) for row in tokens[: len(prompts)]]


def decode_tokens(vocab, ids: Sequence[int], eos_id: int) -> str:
  """Text of a token row, without padding (0) and EOS."""
  return vocab.decode([int(t) for t in ids if t > 0 and t != eos_id])
