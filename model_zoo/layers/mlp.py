"""Gated feed-forward block (SwiGLU, GeGLU, or a plain single activation)."""

from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from model_zoo.errors import ConfigError
from model_zoo.layers import lean_grads, linear, types

_ACTIVATIONS: dict[str, Callable[[types.Array], types.Array]] = {
    "linear": lambda x: x,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "silu": lean_grads.silu,
    "swish": lean_grads.silu,
}


def activation(name: str) -> Callable[[types.Array], types.Array]:
  if name not in _ACTIVATIONS:
    raise ConfigError(
        f"Unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)} "
        "(set by the model config's `activations`)."
    )
  return _ACTIVATIONS[name]


class MlpBlock(nn.Module):
  """out = wo( prod_i act_i(x @ wi_i) ): ("silu","linear") is SwiGLU, ("gelu","linear") GeGLU."""

  hidden_dim: int
  activations: Sequence[str] = ("silu", "linear")
  dropout_rate: float = 0.0
  dtype: types.DType = jnp.float32
  param_dtype: types.DType = jnp.float32

  @nn.compact
  def __call__(self, x: types.Array, deterministic: bool = True) -> types.Array:
    hidden = None
    for i, name in enumerate(self.activations):
      h = linear.DenseGeneral(
          self.hidden_dim,
          ("embed", "mlp"),
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          name=f"wi_{i}" if len(self.activations) > 1 else "wi",
      )(x)
      h = activation(name)(h)
      hidden = h if hidden is None else hidden * h
    hidden = nn.with_logical_constraint(
        hidden, ("activation_batch", "activation_length", "activation_mlp")
    )
    hidden = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(
        hidden, deterministic=deterministic
    )
    return linear.DenseGeneral(
        x.shape[-1], ("mlp", "embed"), dtype=self.dtype, param_dtype=self.param_dtype, name="wo"
    )(hidden)
