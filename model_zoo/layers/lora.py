"""LoRA (Hu et al. 2021) on the parameter tree: any dense kernel W of any zoo model, chosen by
a path pattern, is used as W + (alpha / rank) * A @ B, with A [in, rank] and B [rank, out].

Adapters live beside the kernel they adapt (`.../query/kernel` gets `.../query/lora_a` and
`.../query/lora_b`), so one parameter tree holds base and adapters and the usual tools pick
them by path (optimizer masks, checkpoint assignment maps). The model's modules never see
them: `merge` folds each adapter into its kernel before the module runs. That costs one
[in, rank] x [rank, out] product per adapted kernel per step, small beside the tokens'
matmuls, and it works for every module, scanned or not, without changing any of them.

A kernel's axes split as [stack..., in..., out...]: its leading "layers" / "expert" axes
(scanned layers, MoE experts) each get adapters of their own; of the rest, a kernel whose
first axis is "embed" reads the model dimension (query/key/value [embed, heads, kv], wi
[embed, mlp], the logits head [embed, vocab]), and every other kernel writes its last axis
(out [heads, kv, embed], wo [mlp, embed]). A starts like a fan-in scaled normal, B at zero,
so an adapted model starts as its base.

Dropout: the input of each adapted matmul is gone once the adapter is merged, so
`rank_dropout_rate` drops whole rank-1 components of A @ B instead (per kernel and step,
the rest scaled by 1 / (1 - rate)), as LyCORIS's rank dropout does.
"""

import dataclasses
import math
import re
from typing import Any, Mapping, Optional, Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp

from model_zoo.errors import ConfigError

Params = Any
LORA_A, LORA_B = "lora_a", "lora_b"
STACK_AXES = ("layers", "expert")  # leading kernel axes whose slices get their own adapters
MODEL_AXIS = "embed"


@gin.configurable
@dataclasses.dataclass(frozen=True)
class LoraConfig:
  """Which kernels get adapters (regexes searched in '/'-joined parameter paths, e.g.
  'decoder/layers/self_attention/query/kernel') and their rank, scale and dropout."""

  rank: int = 8
  alpha: float = 16.0
  target_patterns: Sequence[str] = (r"attention/(query|key|value|out)/kernel$",)
  rank_dropout_rate: float = 0.0

  def __post_init__(self):
    if not isinstance(self.rank, int) or self.rank < 1:
      raise ConfigError(f"LoraConfig.rank={self.rank!r} must be an integer >= 1.")
    if not self.alpha > 0:
      raise ConfigError(f"LoraConfig.alpha={self.alpha!r} must be > 0 (scale = alpha / rank).")
    if not 0 <= self.rank_dropout_rate < 1:
      raise ConfigError(
          f"LoraConfig.rank_dropout_rate={self.rank_dropout_rate!r} must be in [0, 1)."
      )
    patterns = self.target_patterns
    if isinstance(patterns, str) or not patterns:
      raise ConfigError(
          f"LoraConfig.target_patterns={patterns!r} must be a non-empty list of regexes."
      )
    for pattern in patterns:
      try:
        re.compile(pattern)
      except re.error as e:
        raise ConfigError(f"LoraConfig.target_patterns: {pattern!r} is not a regex ({e}).")

  @property
  def scale(self) -> float:
    return self.alpha / self.rank


@dataclasses.dataclass(frozen=True)
class KernelSplit:
  """How an adapted kernel's axes divide: [stack..., in..., out...]."""

  stack: int
  inputs: int

  def sizes(self, shape: Sequence[int]) -> tuple[tuple[int, ...], int, int]:
    """(stack shape, in size, out size) of a kernel of `shape`."""
    stack, rest = tuple(shape[: self.stack]), shape[self.stack :]
    return stack, math.prod(rest[: self.inputs]), math.prod(rest[self.inputs :])


def kernel_split(names: Sequence[Optional[str]], path: str) -> KernelSplit:
  """The split of a kernel with logical axis `names` (module docstring's rule)."""
  stack = 0
  while stack < len(names) and names[stack] in STACK_AXES:
    stack += 1
  rest = names[stack:]
  if len(rest) < 2:
    raise ConfigError(
        f"LoraConfig.target_patterns match {path!r}, axes {tuple(names)}: LoRA adapts matrices "
        "(an input and an output axis beside any layer/expert axes); narrow the patterns to "
        "kernels, e.g. r'attention/(query|value)/kernel$'."
    )
  return KernelSplit(stack, 1 if rest[0] == MODEL_AXIS else len(rest) - 1)


def param_path(key_path) -> str:
  return jax.tree_util.keystr(key_path, simple=True, separator="/")


def _is_adapter(path: str) -> bool:
  return path.rsplit("/", 1)[-1] in (LORA_A, LORA_B)


def _parent(path: str) -> str:
  return path.rsplit("/", 1)[0]


# --- nested dicts by path ------------------------------------------------------------------
def flat_params(tree: Params, is_leaf=None) -> dict[str, Any]:
  """'/'-joined path -> leaf."""
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
  return {param_path(p): leaf for p, leaf in leaves}


def nested_params(flat: Mapping[str, Any]) -> dict:
  """The nested dicts of a `flat_params` mapping."""
  tree: dict = {}
  for path, leaf in flat.items():
    *parents, name = path.split("/")
    node = tree
    for parent in parents:
      node = node.setdefault(parent, {})
    node[name] = leaf
  return tree


def _is_boxed(x) -> bool:
  return isinstance(x, nn.meta.AxisMetadata)


# --- adding, splitting and merging adapters -------------------------------------------------
def targets(boxed_params: Params, config: LoraConfig) -> dict[str, KernelSplit]:
  """Path -> split of every kernel the config adapts, from parameters boxed with their logical
  axis names (a Model's `init`). Raises ConfigError for a pattern that matches nothing."""
  flat = {p: x for p, x in flat_params(boxed_params, _is_boxed).items() if not _is_adapter(p)}
  patterns = [re.compile(p) for p in config.target_patterns]
  for pattern in patterns:
    if not any(pattern.search(path) for path in flat):
      paths = list(flat)
      examples = ", ".join(repr(paths[i * (len(paths) - 1) // 4]) for i in range(5))
      raise ConfigError(
          f"LoraConfig.target_patterns: {pattern.pattern!r} matches no parameter path; the "
          f"{len(paths)} paths look like {examples}."
      )
  chosen = {}
  for path, leaf in flat.items():
    if any(p.search(path) for p in patterns):
      names = leaf.names if _is_boxed(leaf) else (None,) * jnp.ndim(leaf)
      chosen[path] = kernel_split(names, path)
  return chosen


def init_adapters(rng: jax.Array, boxed_params: Params, config: LoraConfig) -> Params:
  """`boxed_params` with (A, B) beside each adapted kernel: A ~ N(0, 1/in), B = 0, both boxed
  with the kernel's stack/in/out axis names and an unsharded rank axis."""
  flat = flat_params(boxed_params, _is_boxed)
  for i, (path, split) in enumerate(sorted(targets(boxed_params, config).items())):
    leaf = flat[path]
    kernel = leaf.unbox() if _is_boxed(leaf) else leaf
    names = leaf.names if _is_boxed(leaf) else (None,) * kernel.ndim
    stack, fan_in, fan_out = split.sizes(kernel.shape)
    cut = split.stack + split.inputs
    if config.rank > min(fan_in, fan_out):
      raise ConfigError(
          f"LoraConfig.rank={config.rank} exceeds {path!r} {tuple(kernel.shape)} (in x out "
          f"{fan_in} x {fan_out}); a rank at most "
          "the smaller side keeps the adapter low-rank."
      )
    a_shape = (*kernel.shape[:cut], config.rank)
    b_shape = (*stack, config.rank, *kernel.shape[cut:])
    a = jax.random.normal(jax.random.fold_in(rng, i), a_shape, kernel.dtype) / math.sqrt(fan_in)
    b = jnp.zeros(b_shape, kernel.dtype)
    a_names = (*names[:cut], None)
    b_names = (*names[: split.stack], None, *names[cut:])
    # boxed as the kernel is (its logical names, mesh and rules), or plain like it
    box = (lambda x, n: leaf.replace(value=x, names=n)) if _is_boxed(leaf) else (lambda x, n: x)
    flat[f"{_parent(path)}/{LORA_A}"] = box(a, a_names)
    flat[f"{_parent(path)}/{LORA_B}"] = box(b, b_names)
  return nested_params(flat)


def split_adapters(params: Params) -> tuple[Params, Params]:
  """(base parameters, adapters): the tree without and with only the lora_a/lora_b leaves."""
  flat = flat_params(params, _is_boxed)
  base = {p: x for p, x in flat.items() if not _is_adapter(p)}
  adapters = {p: x for p, x in flat.items() if _is_adapter(p)}
  return nested_params(base), nested_params(adapters)


def join_adapters(base: Params, adapters: Params) -> Params:
  return nested_params({**flat_params(base, _is_boxed), **flat_params(adapters, _is_boxed)})


def delta(a: jax.Array, b: jax.Array, kernel_shape: Sequence[int]) -> jax.Array:
  """A @ B in the kernel's shape, in float32: A [stack..., in..., r], B [stack..., r, out...]."""
  stack = a.ndim + b.ndim - 2 - len(kernel_shape)
  stack_shape, rank = tuple(a.shape[:stack]), a.shape[-1]
  a2 = a.astype(jnp.float32).reshape(*stack_shape, -1, rank)
  b2 = b.astype(jnp.float32).reshape(*stack_shape, rank, -1)
  return jnp.matmul(a2, b2).reshape(kernel_shape)


def _adapted(params: Params) -> tuple[dict[str, Any], list[str]]:
  """(flat params, paths of the kernels with adapters beside them)."""
  flat = flat_params(params)
  kernels = sorted(f"{_parent(p)}/kernel" for p in flat if p.endswith(f"/{LORA_A}"))
  for kernel in kernels:
    if kernel not in flat or f"{_parent(kernel)}/{LORA_B}" not in flat:
      raise ConfigError(
          f"LoRA adapter at {_parent(kernel)!r} has no kernel or no lora_b beside it; the "
          "adapters belong to another model (check LoraConfig.target_patterns)."
      )
  return flat, kernels


def merge(
    params: Params,
    scale: float,
    rank_dropout_rate: float = 0.0,
    rng: Optional[jax.Array] = None,
) -> Params:
  """The base tree with each adapted kernel W replaced by W + scale * A @ B (in W's dtype) and
  the adapters removed. With `rng` and a rate, rank components drop out (module docstring)."""
  flat, kernels = _adapted(params)
  merged = {p: x for p, x in flat.items() if not _is_adapter(p)}
  for i, path in enumerate(kernels):
    a, b = flat[f"{_parent(path)}/{LORA_A}"], flat[f"{_parent(path)}/{LORA_B}"]
    if rng is not None and rank_dropout_rate > 0:
      stack = a.ndim + b.ndim - 2 - flat[path].ndim
      keep = jax.random.bernoulli(
          jax.random.fold_in(rng, i), 1 - rank_dropout_rate, (*a.shape[:stack], a.shape[-1])
      )
      keep = keep.reshape(*a.shape[:stack], *(1,) * (a.ndim - stack - 1), a.shape[-1])
      a = a * keep.astype(a.dtype) / (1 - rank_dropout_rate)
    kernel = flat[path]
    update = scale * delta(a, b, kernel.shape)
    merged[path] = (kernel.astype(jnp.float32) + update).astype(kernel.dtype)
  return nested_params(merged)


def unmerge(merged: Params, adapters: Params, scale: float) -> Params:
  """The base tree back from `merge(join_adapters(base, adapters), scale)`: W' - scale * A @ B
  (W up to the float rounding of the add and the subtract)."""
  return merge(join_adapters(merged, adapters), -scale)


def _checked_delta(a: jax.Array, b: jax.Array, kernel: jax.Array, where: str) -> jax.Array:
  """`delta` of an adapter for `kernel`, after checking that its shapes fit the kernel's."""
  stack = a.ndim + b.ndim - 2 - kernel.ndim
  fits = (
      stack >= 0
      and a.shape[:stack] == b.shape[:stack]
      and a.shape[-1] == b.shape[stack]
      and (*a.shape[:-1], *b.shape[stack + 1 :]) == kernel.shape
  )
  if not fits:
    raise ConfigError(
        f"the adapter at {where!r} (A {a.shape}, B {b.shape}) does not fit the kernel "
        f"{kernel.shape}: it was trained on another model"
    )
  return delta(a, b, kernel.shape)


def merge_weighted(base: Params, weighted: Sequence[tuple[Params, float]]) -> Params:
  """`base` with sum_i w_i * A_i @ B_i added to each kernel that adapters adapt: several
  adapters at once, each `(adapters, w_i)`, w_i including the adapter's own alpha / rank.
  Ranks may differ (only the products add). An adapter of a kernel `base` lacks, or of
  another shape, is a ConfigError."""
  flat = flat_params(base)
  if any(_is_adapter(p) for p in flat):
    raise ConfigError("merge_weighted takes a base without adapters (see split_adapters)")
  updates: dict[str, jax.Array] = {}
  for adapters, weight in weighted:
    pieces = flat_params(adapters)
    for a_path in sorted(p for p in pieces if p.endswith(f"/{LORA_A}")):
      parent = _parent(a_path)
      kernel_path, b_path = f"{parent}/kernel", f"{parent}/{LORA_B}"
      if kernel_path not in flat or b_path not in pieces:
        raise ConfigError(
            f"the adapter at {parent!r} has no kernel in the base model or no lora_b: it was "
            "trained on another model"
        )
      update = weight * _checked_delta(pieces[a_path], pieces[b_path], flat[kernel_path], parent)
      updates[kernel_path] = updates[kernel_path] + update if kernel_path in updates else update
  merged = dict(flat)
  for path, update in updates.items():
    merged[path] = (flat[path].astype(jnp.float32) + update).astype(flat[path].dtype)
  return nested_params(merged)
