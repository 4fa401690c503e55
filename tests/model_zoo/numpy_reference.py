"""Plain NumPy float64 references for the model_zoo layers, written from the math.

Nothing here imports model_zoo: the tests compare the JAX code against these.
"""

import numpy as np


def unbox(tree):
  """Strip flax's logical-partitioning boxes and return float64 NumPy arrays."""
  import jax
  from flax.core import meta

  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), meta.unbox(tree))


def rms_norm(x, scale, eps):
  x = np.asarray(x, np.float64)
  return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * np.asarray(scale, np.float64)


def rope(x, positions, max_wavelength=10_000.0):
  """Rotate-half RoPE. x [batch, length, heads, head_dim], positions [batch, length]."""
  x = np.asarray(x, np.float64)
  half = x.shape[-1] // 2
  freq = float(max_wavelength) ** (-np.arange(half, dtype=np.float64) / half)
  angle = np.asarray(positions, np.float64)[:, :, None, None] * freq  # [b, l, 1, half]
  x1, x2 = x[..., :half], x[..., half:]
  cos, sin = np.cos(angle), np.sin(angle)
  return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def softmax(z):
  z = z - np.max(z, axis=-1, keepdims=True)
  e = np.exp(z)
  return e / np.sum(e, axis=-1, keepdims=True)


def attention(q, k, v, mask=None):
  """Loop over batch and heads; query head h reads kv head h // (heads // kv_heads).

  q [b, t, heads, d] (already scaled), k/v [b, s, kv_heads, d], mask broadcastable to
  [b, 1, t, s] (True = may attend). A fully masked query row averages all values uniformly
  (the documented behaviour: finite masking, no NaN).
  """
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  b, t, heads, d = q.shape
  s, kv_heads = k.shape[1], k.shape[2]
  group = heads // kv_heads
  m = (
      np.ones((b, 1, t, s), bool)
      if mask is None
      else np.broadcast_to(np.asarray(mask, bool), (b, 1, t, s))
  )
  out = np.zeros((b, t, heads, v.shape[-1]))
  for bi in range(b):
    for h in range(heads):
      g = h // group
      logits = q[bi, :, h, :] @ k[bi, :, g, :].T  # [t, s]
      probs = np.zeros_like(logits)
      for i in range(t):
        allowed = m[bi, 0, i]
        if allowed.any():
          row = np.where(allowed, logits[i], -np.inf)
          probs[i] = softmax(row)
        else:
          probs[i] = 1.0 / s
      out[bi, :, h, :] = probs @ v[bi, :, g, :]
  return out


def attention_module(
    params,
    x_q,
    x_kv,
    mask=None,
    q_positions=None,
    kv_positions=None,
    use_rope=True,
    max_wavelength=10_000.0,
):
  """The full Attention layer: projections, RoPE on q and k, q * head_dim**-0.5, out projection."""
  wq, wk, wv, wo = (params[n]["kernel"] for n in ("query", "key", "value", "out"))
  x_q, x_kv = np.asarray(x_q, np.float64), np.asarray(x_kv, np.float64)
  q = np.einsum("ble,ehd->blhd", x_q, wq)
  k = np.einsum("ble,ehd->blhd", x_kv, wk)
  v = np.einsum("ble,ehd->blhd", x_kv, wv)
  if use_rope:
    if q_positions is None:
      q_positions = np.broadcast_to(np.arange(q.shape[1]), q.shape[:2])
    if kv_positions is None:
      kv_positions = np.broadcast_to(np.arange(k.shape[1]), k.shape[:2])
    q = rope(q, q_positions, max_wavelength)
    k = rope(k, kv_positions, max_wavelength)
  q = q * q.shape[-1] ** -0.5
  o = attention(q, k, v, mask)
  return np.einsum("blhd,hde->ble", o, wo)
