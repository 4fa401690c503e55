"""A decoder-only LM and its training step written plainly in Flax linen + optax, as a user
would write them by hand: the baseline that podzoo's `Trainer.train_step` is timed against.

The same architecture as podzoo's DecoderOnlyLM (pre-RMSNorm blocks, RoPE, multi-query /
grouped-query attention, SwiGLU, a tied embedding, fp32 softmax and loss), from Flax's own
layers, with none of the framework: no logical axes or mesh, no padding or segment masks
(causal only), no loss weights, no z-loss, no metrics beyond the loss, no microbatching, no
finite checks. Its numerics are not podzoo's (initialisers differ): compare speed, not loss.
Attention is an einsum, or jax.nn.dot_product_attention(..., is_causal=True) with the "xla" or
"cudnn" implementation (what a hand-written GPU loop would call).
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


def rope(x: jax.Array, max_wavelength: float = 10_000.0) -> jax.Array:
  """Rotary embedding (rotate-half) of x [batch, length, heads, head_dim] at positions 0.."""
  half = x.shape[-1] // 2
  inv_freq = max_wavelength ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = jnp.arange(x.shape[1], dtype=jnp.float32)[:, None] * inv_freq  # [length, half]
  sin, cos = jnp.sin(angles)[None, :, None], jnp.cos(angles)[None, :, None]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


class Block(nn.Module):
  """Pre-norm causal self-attention and a SwiGLU MLP."""

  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  dtype: Any
  attention: str = "einsum"  # einsum | xla | cudnn

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    batch, length, emb = x.shape
    groups = self.num_heads // self.num_kv_heads
    dense = lambda features, **kw: nn.DenseGeneral(features, use_bias=False, dtype=self.dtype, **kw)
    h = nn.RMSNorm(dtype=self.dtype)(x)
    q = rope(dense((self.num_heads, self.head_dim))(h)) * self.head_dim**-0.5
    k = rope(dense((self.num_kv_heads, self.head_dim))(h))
    v = dense((self.num_kv_heads, self.head_dim))(h)
    if self.attention == "einsum":
      q = q.reshape(batch, length, self.num_kv_heads, groups, self.head_dim)
      scores = jnp.einsum("bqgrd,bkgd->bgrqk", q, k, preferred_element_type=jnp.float32)
      causal = jnp.tril(jnp.ones((length, length), bool))
      probs = jax.nn.softmax(jnp.where(causal, scores, -1e30), axis=-1).astype(self.dtype)
      attended = jnp.einsum("bgrqk,bkgd->bqgrd", probs, v)
      attended = attended.reshape(batch, length, self.num_heads, self.head_dim)
    else:
      attended = jax.nn.dot_product_attention(
          q, k, v, scale=1.0, is_causal=True, implementation=self.attention
      )
    x = x + dense(emb, axis=(-2, -1))(attended)
    h = nn.RMSNorm(dtype=self.dtype)(x)
    gated = nn.silu(dense(self.mlp_dim)(h)) * dense(self.mlp_dim)(h)
    return x + dense(emb)(gated)


class PlainLM(nn.Module):
  """Token embedding, `num_layers` Blocks (a Python loop), final RMSNorm, tied logits."""

  vocab_size: int
  emb_dim: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  dtype: Any = jnp.float32
  attention: str = "einsum"  # einsum | xla | cudnn

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    embed = nn.Embed(self.vocab_size, self.emb_dim, dtype=self.dtype)
    x = embed(tokens)
    for _ in range(self.num_layers):
      x = Block(
          self.num_heads,
          self.num_kv_heads,
          self.head_dim,
          self.mlp_dim,
          self.dtype,
          self.attention,
      )(x)
    return embed.attend(nn.RMSNorm(dtype=self.dtype)(x)).astype(jnp.float32)


def from_config(cfg) -> PlainLM:
  """The plain model with the dims, activation dtype and attention of a podzoo TransformerConfig.

  attention_impl "pallas" (podzoo's own kernel) maps to jax.nn's fused attention: cuDNN on a
  GPU, XLA elsewhere, as a hand-written loop would have it.
  """
  attention = cfg.attention_impl
  if attention == "pallas":
    attention = "cudnn" if jax.default_backend() == "gpu" else "xla"
  return PlainLM(
      vocab_size=cfg.vocab_size,
      emb_dim=cfg.emb_dim,
      num_layers=cfg.num_layers,
      num_heads=cfg.num_heads,
      num_kv_heads=cfg.num_kv_heads,
      head_dim=cfg.head_dim,
      mlp_dim=cfg.mlp_dim,
      dtype=jnp.dtype(cfg.dtype),
      attention=attention,
  )


def adamw(learning_rate: float) -> optax.GradientTransformation:
  """AdamW with podzoo's default hyper-parameters; weight decay on matrices only."""
  return optax.adamw(
      learning_rate,
      b1=0.9,
      b2=0.95,
      eps=1e-8,
      weight_decay=0.1,
      mask=lambda params: jax.tree.map(lambda p: p.ndim > 1, params),
  )


def make_train_step(model: PlainLM, tx: optax.GradientTransformation) -> Callable:
  """A jitted (params, opt_state, inputs, targets) -> (params, opt_state, loss) step."""

  def loss_fn(params, inputs, targets):
    logits = model.apply({"params": params}, inputs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

  def train_step(params, opt_state, inputs, targets):
    loss, grads = jax.value_and_grad(loss_fn)(params, inputs, targets)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(train_step, donate_argnums=(0, 1))


def init(model: PlainLM, tx: optax.GradientTransformation, rng: jax.Array, inputs: jax.Array):
  """(params, optimizer state) for batches shaped like `inputs`."""
  params = jax.jit(model.init)(rng, inputs)["params"]
  return params, tx.init(params)
