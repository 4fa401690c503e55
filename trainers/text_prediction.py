"""Greedy continuations of text prompts, for the end of a run and quick looks at a model."""

from typing import Sequence

import jax
import numpy as np

from trainers import partitioning


def prompt_batch(
    prompt_ids: Sequence[Sequence[int]], length: int, rows: int
) -> dict[str, np.ndarray]:
  """A prefix-LM batch whose input part is each prompt (after the leading 0 / BOS)."""
  inputs = np.zeros((rows, length), np.int32)
  causal = np.zeros((rows, length), np.int32)
  for i, ids in enumerate(prompt_ids):
    ids = list(ids)
    if len(ids) > length - 1:
      raise ValueError(
          f"Prompt {i} has {len(ids)} tokens but the decode length is {length} (prompt + BOS must"
          " fit): raise the length or shorten the prompt."
      )
    inputs[i, 1 : len(ids) + 1] = ids
    causal[i, : len(ids) + 1] = 1
  return {
      "decoder_input_tokens": inputs,
      "decoder_target_tokens": np.zeros_like(inputs),
      "decoder_causal_attention": causal,
  }


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
  batch = prompt_batch([vocab.encode(p) for p in prompts], length, rows)
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


def padded_prompt_batch(
    prompts: np.ndarray, length: int, padding: str = "right"
) -> dict[str, np.ndarray]:
  """prompt_batch from a [batch, prompt_length] array of 0-padded prompts, either side."""
  if padding not in ("left", "right"):
    raise ValueError(f"padding={padding!r}; expected 'left' or 'right'.")
  rows = []
  for row in np.asarray(prompts):
    nonzero = np.flatnonzero(row)
    if not len(nonzero):
      rows.append([])
    elif padding == "right":
      rows.append(row[: nonzero[-1] + 1])
    else:
      rows.append(row[nonzero[0] :])
  return prompt_batch(rows, length, len(rows))
