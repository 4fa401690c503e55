"""Checkpoint parameters laid out for a MoE model they were not saved from.

- Expert growth (Lifelong-MoE, Chen et al. 2023): a model with more experts per MoE layer
  than the checkpoint keeps the old experts and router columns as they were and adds
  experts initialised fresh or as copies of the old ones (new expert j copies old expert
  j mod E_old); the new router columns start fresh.
- Sparse upcycling (Komatsuzaki et al. 2023): a dense transformer's checkpoint starts a MoE
  model of the same dims whose every expert is a copy of its layer's dense FFN; routers
  start fresh. The MoE model groups its layers in blocks of MoeConfig.moe_layer_interval
  (dense.MoeLayerBlock: `layers/layer_{i}` scanned, `layers_{b}/layer_{i}` unrolled), so
  dense layer l becomes block l // interval, layer l % interval.

Each function maps a model parameter's '/'-joined path to where its values come from; the
trainers read the checkpoint and place the result (trainers/initial_checkpoint.py).
"""

import re
from typing import Callable, Optional

import jax.numpy as jnp

from model_zoo.errors import ConfigError
from model_zoo.moe import layer as moe_layer

NEW_EXPERT_INITS = ("fresh", "copy")
Transform = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]  # (saved, fresh) -> model's


def is_router(path: str) -> bool:
  return path.split("/")[-3:] == [moe_layer.MODULE_NAME, "router", "kernel"]


def is_expert_kernel(path: str) -> bool:
  """The experts' stacked FFN kernels (wi_*, wo: [(layers,) experts, in, out])."""
  parts = path.split("/")
  return len(parts) > 1 and parts[-2] == moe_layer.MODULE_NAME and parts[-1] != "router"


def expert_axis(path: str, ndim: int) -> Optional[int]:
  """The experts' axis of a MoE parameter (last for a router, third from last for an expert
  kernel); None for any other parameter."""
  if is_router(path):
    return ndim - 1
  if is_expert_kernel(path):
    return ndim - 3
  return None


def grow(saved: jnp.ndarray, fresh: jnp.ndarray, axis: int, new_experts: str) -> jnp.ndarray:
  """`saved`'s experts along `axis`, then the model's extra ones: `fresh`'s, or copies of
  the saved ones ("copy")."""
  old, new = saved.shape[axis], fresh.shape[axis]
  extra = jnp.arange(old, new)
  source = saved if new_experts == "copy" else fresh
  return jnp.concatenate([saved, jnp.take(source, extra % source.shape[axis], axis)], axis)


def growth(
    path: str, saved_shape: tuple, model_shape: tuple, new_experts: Optional[str]
) -> Optional[Transform]:
  """How to grow a saved MoE parameter into the model's shape; None if the shapes are not
  a growth (another error explains them). ConfigError if the experts shrink, or growth was
  not asked for (`new_experts` None)."""
  axis = expert_axis(path, len(model_shape))
  if axis is None or len(saved_shape) != len(model_shape):
    return None
  others = lambda shape: shape[:axis] + shape[axis + 1 :]
  if others(saved_shape) != others(model_shape):
    return None
  old, new = saved_shape[axis], model_shape[axis]
  if new < old:
    raise ConfigError(
        f"Parameter {path}: the checkpoint has {old} experts and the model {new}; a growth "
        "phase may only add experts. Set MoeConfig.num_experts >= the checkpoint's."
    )
  if new_experts is None:
    raise ConfigError(
        f"Parameter {path}: the checkpoint has {old} experts and the model {new}. Set "
        f"InitialCheckpoint.new_experts to one of {list(NEW_EXPERT_INITS)} to grow them."
    )
  if new_experts not in NEW_EXPERT_INITS:
    raise ConfigError(
        f"InitialCheckpoint.new_experts={new_experts!r}; expected one of "
        f"{list(NEW_EXPERT_INITS)}."
    )
  how = "fresh" if is_router(path) else new_experts  # new router columns always start fresh
  return lambda saved, fresh: grow(saved, fresh, axis, how)


_SCANNED = re.compile(r"(?P<stack>.*)/layers/layer_(?P<i>\d+)/(?P<rest>.*)")
_UNROLLED = re.compile(r"(?P<stack>.*)/layers_(?P<block>\d+)/layer_(?P<i>\d+)/(?P<rest>.*)")


def _dense_name(rest: str) -> str:
  """A layer-relative MoE parameter's dense counterpart (moe/wi_0 -> mlp/wi_0/kernel)."""
  parts = rest.split("/")
  if parts[0] == moe_layer.MODULE_NAME:
    return "/".join(["mlp", *parts[1:], "kernel"])
  return rest


def upcycle_source(path: str, interval: int) -> Optional[tuple[str, Optional[Transform]]]:
  """Where a MoE model's parameter comes from in a dense checkpoint: (dense path, transform
  of the dense array, None for as it is); None for a router (fresh)."""
  if is_router(path):
    return None
  broadcast = is_expert_kernel(path)
  if match := _SCANNED.fullmatch(path):
    i, source = int(match["i"]), f"{match['stack']}/layers/{_dense_name(match['rest'])}"

    def from_scanned(saved, fresh):
      block_layer = saved.reshape(saved.shape[0] // interval, interval, *saved.shape[1:])[:, i]
      if broadcast:  # [blocks, in, out] -> [blocks, experts, in, out]
        return jnp.broadcast_to(block_layer[:, None], fresh.shape)
      return block_layer

    return source, from_scanned
  if match := _UNROLLED.fullmatch(path):
    layer = int(match["block"]) * interval + int(match["i"])
    source = f"{match['stack']}/layers_{layer}/{_dense_name(match['rest'])}"
    if broadcast:
      return source, lambda saved, fresh: jnp.broadcast_to(saved[None], fresh.shape)
    return source, None
  return path, None


def layer_interval(model_paths: list[str]) -> int:
  """MoeConfig.moe_layer_interval of a MoE model, from its parameter names (layer_{i})."""
  found = [
      int(m["i"]) for p in model_paths if (m := _SCANNED.fullmatch(p) or _UNROLLED.fullmatch(p))
  ]
  return max(found) + 1 if found else 1
