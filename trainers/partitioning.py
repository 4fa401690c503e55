"""One device mesh with named axes, logical->mesh rules as data, and jit with explicit shardings.

Nothing in model_zoo/ knows the mesh: parameters and activations carry logical axis names
("embed", "heads", "activation_batch", ...) and the rules here map them onto mesh axes.
The same code runs on 1 CPU device, 8 fake CPU devices, a GPU and a TPU pod slice.
"""

import contextlib
import logging
import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import gin
import jax
import numpy as np
from jax.experimental import mesh_utils, multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from model_zoo.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor", "expert")
# Dense layers are data-parallel over the expert axis too; MoE layers move their tokens from
# it onto the experts (and back) by an all-to-all, from the "activation_expert" constraints.
BATCH_AXES = ("data", "fsdp", "expert")
BATCH_AXES_NO_EXPERT = ("data", "fsdp")

# (logical axis, mesh axis or axes or None). Parameters use the plain names, activations
# the "activation_" ones, so that e.g. "embed" can be FSDP-sharded on parameters while
# activations stay batch-sharded over the same mesh axis.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", BATCH_AXES),
    ("activation_batch", BATCH_AXES),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv_heads", "tensor"),
    ("activation_kv", None),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("kv", None),
    ("norm", None),
    ("relpos_buckets", None),
    ("layers", None),
    ("expert", "expert"),
    ("activation_expert", "expert"),
    ("activation_batch_no_expert", BATCH_AXES_NO_EXPERT),
    # SPAE's convolutions (model_zoo/spae) are small: replicated.
    ("conv_height", None),
    ("conv_width", None),
    ("conv_in", None),
    ("conv_out", None),
    ("latent", None),
)


def resolve_mesh_shape(
    mesh_shape: Sequence[int], num_devices: int, mesh_axes: Sequence[str] = MESH_AXES
) -> tuple[int, ...]:
  """Replaces a single -1 by the remaining devices and checks the product is `num_devices`."""
  if len(mesh_shape) != len(mesh_axes):
    raise ConfigError(
        f"Partitioner.mesh_shape={tuple(mesh_shape)} has {len(mesh_shape)} entries but the "
        f"mesh axes are {tuple(mesh_axes)}; give one size per axis."
    )
  unknown = [i for i, s in enumerate(mesh_shape) if s == -1]
  known = math.prod(s for s in mesh_shape if s != -1)
  if len(unknown) > 1 or any(s == 0 or s < -1 for s in mesh_shape):
    raise ConfigError(
        f"Partitioner.mesh_shape={tuple(mesh_shape)}: sizes must be positive, with at "
        "most one -1 meaning 'the rest of the devices'."
    )
  shape = list(mesh_shape)
  if unknown:
    if num_devices % known:
      raise ConfigError(_mesh_error(mesh_shape, mesh_axes, num_devices))
    shape[unknown[0]] = num_devices // known
  if math.prod(shape) != num_devices:
    raise ConfigError(_mesh_error(mesh_shape, mesh_axes, num_devices))
  return tuple(shape)


def _mesh_error(mesh_shape, mesh_axes, num_devices) -> str:
  return (
      f"Partitioner.mesh_shape={tuple(mesh_shape)} over axes {tuple(mesh_axes)} does not divide the "
      f"{num_devices} available devices; choose sizes whose product is {num_devices} "
      '(one entry may be -1), e.g. --gin.Partitioner.mesh_shape="(-1, 1, 1, 1)".'
  )


def make_mesh(
    mesh_shape: Sequence[int],
    mesh_axes: Sequence[str] = MESH_AXES,
    devices: Optional[Sequence[jax.Device]] = None,
) -> Mesh:
  devices = list(jax.devices() if devices is None else devices)
  shape = resolve_mesh_shape(mesh_shape, len(devices), mesh_axes)
  try:  # topology-aware on TPU/GPU
    grid = mesh_utils.create_device_mesh(shape, devices)
  except (ValueError, NotImplementedError, AssertionError):
    grid = np.asarray(devices).reshape(shape)
  return Mesh(grid, tuple(mesh_axes))


@gin.configurable
class Partitioner:
  """Owns the mesh and the rules; turns logical axis names into shardings and compiles steps."""

  def __init__(
      self,
      mesh_shape: Sequence[int] = (-1, 1, 1, 1),
      mesh_axes: Sequence[str] = MESH_AXES,
      logical_axis_rules: Sequence[tuple[str, Any]] = DEFAULT_RULES,
      devices: Optional[Sequence[jax.Device]] = None,
  ):
    self.mesh = make_mesh(mesh_shape, mesh_axes, devices)
    self.rules = tuple(
        (name, tuple(v) if isinstance(v, list) else v) for name, v in logical_axis_rules
    )

  @property
  def data_parallel_size(self) -> int:
    return math.prod(self.mesh.shape[a] for a in BATCH_AXES if a in self.mesh.shape)

  @contextlib.contextmanager
  def context(self):
    """The mesh and rules that `nn.with_logical_constraint` inside the model reads."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      yield

  # --- shardings ---------------------------------------------------------------------------
  def spec_for(self, logical_names: Optional[Sequence[Optional[str]]], shape: Sequence[int]) -> P:
    """PartitionSpec for an array; a dimension the mesh axes do not divide is replicated."""
    if not logical_names:
      return P()
    mesh_axes = nn.logical_to_mesh_axes(tuple(logical_names), self.rules)
    resolved = []
    for dim, axes, logical in zip(shape, mesh_axes, logical_names):
      named = (axes,) if isinstance(axes, str) else axes or ()
      unknown = [a for a in named if a not in self.mesh.shape]
      if unknown:
        raise ConfigError(
            f"Partitioner.logical_axis_rules map {logical_names} onto the mesh axes {unknown}, "
            f"which Partitioner.mesh_axes={tuple(self.mesh.axis_names)} does not have."
        )
      size = math.prod(self.mesh.shape[a] for a in named)
      if axes is not None and dim % size and logical == "expert":
        raise ConfigError(
            f"MoeConfig.num_experts={dim} is not a multiple of the mesh's {axes} axes "
            f"({size} devices, Partitioner.mesh_shape): experts are split evenly over them. "
            "Change num_experts or the mesh shape."
        )
      if axes is not None and dim % size:
        logging.warning(
            "Replicating a dimension of size %d (logical %s): mesh axes %s of size %d do "
            "not divide it.",
            dim,
            logical_names,
            axes,
            size,
        )
        axes = None
      resolved.append(axes)
    return P(*resolved)

  def sharding(self, spec: P) -> NamedSharding:
    return NamedSharding(self.mesh, spec)

  def param_shardings(self, boxed_params: Any) -> Any:
    """NamedShardings for (abstract) params boxed with nn.LogicallyPartitioned."""

    def one(x):
      names = x.names if isinstance(x, nn.Partitioned) else None
      shape = (x.value if isinstance(x, nn.Partitioned) else x).shape
      return self.sharding(self.spec_for(names, shape))

    return jax.tree.map(one, boxed_params, is_leaf=lambda x: isinstance(x, nn.Partitioned))

  def like_params_shardings(self, tree: Any, params: Any, param_shardings: Any) -> Any:
    """Shardings for an optimizer state: each parameter's statistics are sharded like it.

    A leaf belongs to the parameter whose path its own key path ends with, so states nested
    in optax.masked / multi_transform (frozen parameters have no leaf there) line up too. A
    leaf of the parameter's shape takes its sharding (Adam's moments); Adafactor's factored
    v_row / v_col take it without the dimension they average over; anything else (counts,
    placeholders) is replicated.
    """
    owners = {
        _key_names(path): (leaf.shape, sharding.spec)
        for (path, leaf), sharding in zip(
            jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(param_shardings)
        )
    }

    def one(path, leaf):
      names = _key_names(path)
      for i in range(len(names)):
        if names[i:] in owners:
          shape, spec = owners[names[i:]]
          field = getattr(path[i - 1], "name", None) if i else None
          return self.sharding(_statistic_spec(leaf.shape, shape, spec, field))
      return self.sharding(P())

    return jax.tree_util.tree_map_with_path(one, tree)

  def batch_sharding(self, ndim: int = 2) -> NamedSharding:
    return self.sharding(P(BATCH_AXES, *([None] * (ndim - 1))))

  def shard_batch(self, host_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Builds global arrays from each process's rows of the batch (its shard of the data)."""
    return {
        k: jax.make_array_from_process_local_data(self.batch_sharding(np.ndim(v)), np.asarray(v))
        for k, v in host_batch.items()
    }

  def apply_gathered(
      self, jitted: Callable, params: Any, local_batch: dict[str, np.ndarray]
  ) -> Any:
    """Runs `jitted(params, global batch)` on each process's rows; every process gets all outputs."""
    with self.context():
      outputs = jitted(params, self.shard_batch(local_batch))
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(outputs, tiled=True))

  def check_batch_size(self, global_batch_size: int, binding: str = "BATCH_SIZE") -> None:
    if global_batch_size % self.data_parallel_size:
      raise ConfigError(
          f"{binding}={global_batch_size} is not divisible by the data-parallel size "
          f"{self.data_parallel_size} (mesh data x fsdp x expert = {dict(self.mesh.shape)}); use a multiple of "
          f"{self.data_parallel_size} or change Partitioner.mesh_shape."
      )

  # --- compilation -------------------------------------------------------------------------
  def compile(
      self, fn: Callable, in_shardings: Any, out_shardings: Any, donate_argnums: Sequence[int] = ()
  ) -> Callable:
    """jax.jit with explicit shardings, traced under this mesh and these rules."""
    jitted = jax.jit(
        fn,
        in_shardings=in_shardings,
        out_shardings=out_shardings,
        donate_argnums=tuple(donate_argnums),
    )

    def run(*args):
      with self.context():
        return jitted(*args)

    run.lower = lambda *args: _lower_in(self, jitted, args)
    return run


# optax's Adafactor averages a factored parameter's second moments over its largest
# dimension (v_row) and its second largest (v_col), ranked by np.argsort of its shape.
_FACTORED_STATS = {"v_row": -1, "v_col": -2}


def _key_names(path) -> tuple[str, ...]:
  return tuple(str(k) for k in path)


def _statistic_spec(
    shape: tuple[int, ...], param_shape: tuple[int, ...], param_spec: P, field: Optional[str]
) -> P:
  """The spec of an optimizer statistic of a parameter: the parameter's, less any
  dimension the statistic averages over; P() for one of another shape."""
  spec = tuple(param_spec) + (None,) * (len(param_shape) - len(param_spec))
  if tuple(shape) == tuple(param_shape):
    return P(*spec)
  if field in _FACTORED_STATS and len(param_shape) >= 2:
    dropped = int(np.argsort(param_shape)[_FACTORED_STATS[field]])
    if tuple(np.delete(param_shape, dropped)) == tuple(shape):
      return P(*(s for d, s in enumerate(spec) if d != dropped))
  return P()


def _lower_in(partitioner: Partitioner, jitted, args):
  with partitioner.context():
    return jitted.lower(*args)
