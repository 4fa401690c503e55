"""Multi-head attention with multi-query / grouped-query heads, RoPE and a KV cache."""

from typing import Optional

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from jax import lax

from model_zoo.errors import ConfigError
from model_zoo.layers import embeddings, lean_grads, linear, masks, types

_MASKED = -1e30  # finite, so that a fully masked row (padding) gives a uniform, not NaN, softmax
# The attention_impls whose decoder self-attention takes `Segments` (ids and causality) instead
# of a dense mask, so that the fused kernel needs no [length, length] mask where it can avoid it.
FUSED_IMPLS = ("cudnn", "pallas")


def dot_product_attention(
    q: types.Array,
    k: types.Array,
    v: types.Array,
    mask: Optional[types.Array] = None,
    implementation: str = "einsum",
    bias: Optional[types.Array] = None,
) -> types.Array:
  """softmax(q k^T) v with fp32 logits and softmax.

  q: [batch, q_len, heads, head_dim]; k, v: [batch, kv_len, kv_heads, head_dim] where
  kv_heads divides heads (kv_heads == 1 is multi-query, == heads is multi-head).
  mask: bool, broadcastable to [batch, 1, q_len, kv_len]; bias: added to the logits,
  broadcastable to [batch, heads, q_len, kv_len]. q must already be scaled.
  `implementation` "einsum" is plain XLA everywhere; "xla" / "cudnn" go through
  jax.nn.dot_product_attention (cuDNN flash attention on GPU; lengths multiple of 64).
  "pallas" has no mask input: its kernel runs through `segment_attention`, and the masked
  calls left to this function (KV-cache decoding) run the einsum path.
  """
  batch, q_len, heads, head_dim = q.shape
  kv_heads = k.shape[2]
  if heads % kv_heads:
    raise ValueError(f"num_heads={heads} is not a multiple of num_kv_heads={kv_heads}.")
  if implementation in ("xla", "cudnn"):
    return jax.nn.dot_product_attention(
        q, k, v, bias=bias, mask=mask, scale=1.0, implementation=implementation
    )
  if implementation not in ("einsum", "pallas"):
    raise ConfigError(
        f"Unknown attention implementation {implementation!r} (TransformerConfig.attention_impl); "
        "use one of einsum, xla, cudnn, pallas."
    )
  q = q.reshape(batch, q_len, kv_heads, heads // kv_heads, head_dim)
  logits = jnp.einsum("bqgrd,bkgd->bgrqk", q, k, preferred_element_type=jnp.float32)
  if bias is not None:
    bias = jnp.broadcast_to(bias, (bias.shape[0], heads) + bias.shape[2:])
    logits = logits + bias.reshape(bias.shape[0], kv_heads, heads // kv_heads, *bias.shape[2:])
  if mask is not None:
    # Added, not selected (jnp.where): the derivative of an addition keeps nothing.
    logits = logits + jnp.where(mask, 0.0, _MASKED)[:, :, None]
  probs = lean_grads.softmax(logits, -1).astype(v.dtype)
  out = jnp.einsum("bgrqk,bkgd->bqgrd", probs, v)
  return out.reshape(batch, q_len, heads, head_dim)


@flax.struct.dataclass
class Segments:
  """Causal self-attention within segments: what the fused kernels take instead of a mask.

  A query attends the keys at or before it that carry its id. Id 0 is padding: what padding
  rows produce is never used (loss weight 0) but stays finite.
  """

  ids: types.Array  # int [batch, length]
  # False: one example per row padded at the end (ids 1..1 0..0), so that cuDNN can take the
  # row lengths instead of a mask. Static: it picks the kernel's arguments.
  packed: bool = flax.struct.field(pytree_node=False, default=True)


def decoder_segments(
    decoder_target_tokens: types.Array, decoder_segment_ids: Optional[types.Array] = None
) -> Segments:
  """The Segments equal to masks.decoder_self_attention_mask (causal, no prefix) for every
  non-padding query: padding targets (0) get id 0, so no real token attends them."""
  real = decoder_target_tokens > 0
  if decoder_segment_ids is None:
    return Segments(real.astype(jnp.int32), packed=False)
  return Segments(jnp.where(real, decoder_segment_ids, 0).astype(jnp.int32), packed=True)


def segment_attention(
    q: types.Array, k: types.Array, v: types.Array, segments: Segments, implementation: str
) -> types.Array:
  """Causal self-attention within `segments` through a fused kernel; shapes and scaling as in
  dot_product_attention. Padding rows differ from the masked einsum's (finite, unused).

  "cudnn" (and "xla", jax.nn's reference of the same call, which runs on a CPU):
  jax.nn.dot_product_attention with is_causal. Unpacked rows pass their
  lengths (cuDNN's fused padding-causal mask; assumes SeqIO's trailing padding); packed rows
  pass a [batch, 1, length, length] segment mask, which cuDNN turns into a bias: correct but
  slower ("pallas" takes the ids). "pallas": JAX's Pallas flash attention (Triton on GPU) with
  segment ids, k/v heads repeated for MQA/GQA; interpreted off GPU (slow: for tests).
  """
  if implementation in ("xla", "cudnn"):
    if segments.packed:
      kwargs = dict(mask=masks.segment_mask(segments.ids, segments.ids))
    else:
      lengths = jnp.sum(segments.ids > 0, axis=-1, dtype=jnp.int32)
      kwargs = dict(query_seq_lengths=lengths, key_value_seq_lengths=lengths)
    return jax.nn.dot_product_attention(
        q, k, v, scale=1.0, is_causal=True, implementation=implementation, **kwargs
    )
  if implementation != "pallas":
    raise ConfigError(
        f"attention_impl={implementation!r} takes a dense mask, not segment ids; use one of "
        f"{['xla', *FUSED_IMPLS]} (TransformerConfig.attention_impl)."
    )
  from jax.experimental.pallas.ops.gpu import attention as pallas_attention  # GPU-only kernels

  repeats = q.shape[2] // k.shape[2]
  k, v = jnp.repeat(k, repeats, axis=2), jnp.repeat(v, repeats, axis=2)
  return pallas_attention.mha(
      q,
      k,
      v,
      segments.ids,
      sm_scale=1.0,
      causal=True,
      interpret=jax.default_backend() != "gpu",
  )


class Attention(nn.Module):
  """Self- or cross-attention. With `decode=True` self-attention keeps a KV cache.

  Decoding convention (as in T5X): a first call with `decode=True` on full-length inputs
  creates a zero cache of that length; each later call writes its chunk of tokens at their
  positions (by default where each row's cache ends) and attends over everything cached up
  to them, so a prompt can be prefilled in one call and then extended one token at a time.
  """

  num_heads: int
  num_kv_heads: int
  head_dim: int
  dtype: types.DType = jnp.float32
  param_dtype: types.DType = jnp.float32
  use_rope: bool = True
  rope_max_wavelength: float = 10_000.0
  dropout_rate: float = 0.0
  implementation: str = "einsum"

  def _project(self, x, heads, axes, name):
    return linear.DenseGeneral(
        (heads, self.head_dim), axes, dtype=self.dtype, param_dtype=self.param_dtype, name=name
    )(x)

  @nn.compact
  def __call__(
      self,
      inputs_q: types.Array,
      inputs_kv: types.Array,
      mask: Optional[types.Array] = None,
      *,
      q_positions: Optional[types.Array] = None,
      kv_positions: Optional[types.Array] = None,
      bias: Optional[types.Array] = None,
      segments: Optional[Segments] = None,
      decode: bool = False,
      deterministic: bool = True,
  ) -> types.Array:
    """`segments` (self-attention without mask, bias or cache) replaces `mask`: causal attention
    within segments through a fused kernel (segment_attention)."""
    q = self._project(inputs_q, self.num_heads, ("embed", "heads", "kv"), "query")
    k = self._project(inputs_kv, self.num_kv_heads, ("embed", "kv_heads", "kv"), "key")
    v = self._project(inputs_kv, self.num_kv_heads, ("embed", "kv_heads", "kv"), "value")
    kv_axes = ("activation_batch", "activation_length", "activation_kv_heads", "activation_kv")
    k, v = nn.with_logical_constraint(k, kv_axes), nn.with_logical_constraint(v, kv_axes)
    if decode and self.has_variable("cache", "cache_index"):
      if q_positions is None:  # continue each row where its cache ends
        offset = self.get_variable("cache", "cache_index")
        q_positions = offset[:, None] + jnp.arange(q.shape[1])[None, :]
      kv_positions = q_positions
    if self.use_rope:  # keys are cached already rotated
      q = embeddings.apply_rope(q, _default_positions(q, q_positions), self.rope_max_wavelength)
      k = embeddings.apply_rope(k, _default_positions(k, kv_positions), self.rope_max_wavelength)
    if decode:
      k, v, mask, bias = self._use_cache(k, v, mask, bias, q_positions)
    q = q * jnp.asarray(self.head_dim**-0.5, q.dtype)
    q = nn.with_logical_constraint(
        q, ("activation_batch", "activation_length", "activation_heads", "activation_kv")
    )
    if segments is not None:
      out = segment_attention(q, k, v, segments, self.implementation)
    else:
      out = dot_product_attention(q, k, v, mask, self.implementation, bias)
    out = nn.Dropout(self.dropout_rate)(out, deterministic=deterministic)
    return linear.DenseGeneral(
        inputs_q.shape[-1],
        ("heads", "kv", "embed"),
        axis=(-2, -1),
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name="out",
    )(out)

  def _use_cache(self, k, v, mask, bias, positions):
    """Writes this chunk's new keys/values into the cache; returns the cached keys/values and
    the mask and bias rows of the chunk's queries.

    Row b's tokens sit at `positions[b]` (contiguous). Positions below the row's
    `cache_index` are already cached (e.g. a prompt prefilled with bidirectional
    attention) and are left as they are. Without an explicit mask a query attends to every
    cached key at or before its position; a given mask [batch, 1, chunk, cache_length]
    replaces that rule (prefilling a prefix-LM prompt).
    """
    initialized = self.has_variable("cache", "cached_key")
    cached_key = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
    cache_index = self.variable("cache", "cache_index", jnp.zeros, (k.shape[0],), jnp.int32)
    if not initialized:  # the cache-creating call: a plain causal forward over the given inputs
      causal = masks.causal_mask(k.shape[1])
      return k, v, causal if mask is None else jnp.logical_and(causal, mask), bias
    max_length = cached_key.value.shape[1]
    start = positions[:, 0]
    is_new = positions >= cache_index.value[:, None]  # [batch, chunk]
    cached_key.value = _write_rows(cached_key.value, k, start, is_new)
    cached_value.value = _write_rows(cached_value.value, v, start, is_new)
    cache_index.value = jnp.maximum(
        cache_index.value, jnp.max(jnp.where(is_new, positions + 1, 0), axis=1)
    )
    if mask is None:
      mask = (jnp.arange(max_length)[None, None, :] <= positions[:, :, None])[:, None]
    if bias is not None:  # bias [1, heads, L, L] covers the whole cache: keep the queries' rows
      bias = jnp.moveaxis(jnp.take(bias[0], positions, axis=1), 1, 0)
    return cached_key.value, cached_value.value, mask, bias


def _write_rows(
    cache: types.Array, chunk: types.Array, start: types.Array, is_new: types.Array
) -> types.Array:
  """cache[b, start[b]:start[b]+c] = chunk[b] where is_new, else unchanged (in place per row)."""
  length = chunk.shape[1]
  old = jax.vmap(lambda row, s: lax.dynamic_slice_in_dim(row, s, length, axis=0))(cache, start)
  update = jnp.where(is_new[:, :, None, None], chunk.astype(cache.dtype), old)
  return jax.vmap(lambda row, u, s: lax.dynamic_update_slice_in_dim(row, u, s, axis=0))(
      cache, update, start
  )


def _default_positions(x: types.Array, positions: Optional[types.Array]) -> types.Array:
  if positions is not None:
    return positions
  return jnp.broadcast_to(jnp.arange(x.shape[1]), x.shape[:2])
