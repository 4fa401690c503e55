"""Boolean attention masks [batch, 1, q_len, kv_len]: True where a query may attend a key.

Packed examples (SeqIO packing) carry segment ids; a token only attends within its segment.
Padding is id/segment 0 and attends nothing useful (its loss weight is 0).
"""

from typing import Optional

import jax.numpy as jnp

from model_zoo.layers import types


def _pairwise(q: types.Array, k: types.Array, fn) -> types.Array:
  return fn(q[:, None, :, None], k[:, None, None, :])


def padding_mask(q_tokens: types.Array, kv_tokens: types.Array) -> types.Array:
  return _pairwise(q_tokens > 0, kv_tokens > 0, jnp.logical_and)


def segment_mask(q_segment_ids: types.Array, kv_segment_ids: types.Array) -> types.Array:
  return _pairwise(q_segment_ids, kv_segment_ids, jnp.equal)


def causal_mask(length: int) -> types.Array:
  idx = jnp.arange(length)
  return (idx[None, :] <= idx[:, None])[None, None]


def decoder_self_attention_mask(
    decoder_target_tokens: types.Array,
    decoder_segment_ids: Optional[types.Array] = None,
    decoder_causal_attention: Optional[types.Array] = None,
) -> types.Array:
  """Causal mask; bidirectional over a prefix-LM's inputs (where decoder_causal_attention is 1)."""
  length = decoder_target_tokens.shape[-1]
  allowed = causal_mask(length)
  if decoder_causal_attention is not None:
    prefix = decoder_causal_attention > 0
    allowed = jnp.logical_or(allowed, _pairwise(prefix, prefix, jnp.logical_and))
  mask = jnp.logical_and(allowed, padding_mask(decoder_target_tokens, decoder_target_tokens))
  if decoder_segment_ids is not None:
    mask = jnp.logical_and(mask, segment_mask(decoder_segment_ids, decoder_segment_ids))
  return mask


def bidirectional_mask(
    q_tokens: types.Array,
    kv_tokens: types.Array,
    q_segment_ids: Optional[types.Array] = None,
    kv_segment_ids: Optional[types.Array] = None,
) -> types.Array:
  """Encoder self-attention and encoder-decoder cross-attention."""
  mask = padding_mask(q_tokens, kv_tokens)
  if q_segment_ids is not None and kv_segment_ids is not None:
    mask = jnp.logical_and(mask, segment_mask(q_segment_ids, kv_segment_ids))
  return mask
