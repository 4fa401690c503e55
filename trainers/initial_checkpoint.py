"""Fine-tuning's start: parameters from another run's checkpoint, mapped onto this model.

As T5X's `INITIAL_CHECKPOINT_PATH`: only the parameters are read (the optimizer state and
the step start fresh), and only when MODEL_DIR holds no checkpoint of its own, so a
fine-tuning run that was interrupted resumes from its own checkpoints. Each parameter of
the model is found in the checkpoint under its own path, unless the first rule of
`assignment_map` that fully matches its path says otherwise: `(pattern, source)` reads it
from `re.sub`'s expansion of `source` (a renamed or moved parameter), `(pattern, None)`
keeps it freshly initialised (a new or grown one). Strict by default: a parameter that is
neither in the checkpoint nor covered by a rule is an error, as is a rule that matches
nothing or a shape that differs; the printed report says what was loaded, mapped,
initialised fresh, and which checkpoint parameters were not used.

Parameters matching a `by_reference` pattern (frozen ones the run never trains, e.g. SPAE's
codebook, an LM's embedding table) are read from the checkpoint unchanged and never saved
again: the run's checkpoints record where they live instead (param_references.py).

Two MoE changes of shape are read through the same plan (model_zoo/moe/growth.py): with
`new_experts` ("fresh" or "copy") a checkpoint with fewer experts per MoE layer fills the
model's first experts and router columns (Lifelong-MoE's growth phase); with `upcycle` a
dense model's checkpoint starts a MoE model, every expert a copy of its layer's dense FFN
and the routers fresh (sparse upcycling).
"""

import dataclasses
import os
import re
from typing import Any, Optional, Sequence

import gin
import jax
from flax import traverse_util

from model_zoo.errors import ConfigError, MissingFileError
from model_zoo.moe import growth
from trainers import checkpoints, param_references

Rule = tuple[str, Optional[str]]
Source = tuple[str, Optional[growth.Transform]]  # checkpoint path, and how it is reshaped


@dataclasses.dataclass
class Report:
  """Where each of the model's parameters came from."""

  loaded: list[str] = dataclasses.field(default_factory=list)
  mapped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (model, checkpoint)
  fresh: list[str] = dataclasses.field(default_factory=list)
  ignored: list[str] = dataclasses.field(default_factory=list)  # in the checkpoint, unused
  # (model, checkpoint): read and reshaped (grown experts, upcycled FFNs)
  reshaped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  # model path -> where it lives: read as the checkpoint holds it, never saved by this run
  references: dict[str, param_references.Reference] = dataclasses.field(default_factory=dict)

  def text(self, source: str) -> str:
    reshaped = f"{len(self.reshaped)} reshaped, " if self.reshaped else ""
    lines = [
        f"Initialised from {source}: {len(self.loaded)} parameters loaded, {len(self.mapped)} "
        f"mapped, {reshaped}{len(self.fresh)} initialised fresh, {len(self.ignored)} in the "
        "checkpoint not used."
    ]
    lines += [f"  mapped  {target} <- {origin}" for target, origin in self.mapped]
    lines += [f"  reshaped {target} <- {origin}" for target, origin in self.reshaped]
    lines += [f"  fresh   {path}" for path in self.fresh]
    lines += [f"  unused  {path}" for path in self.ignored]
    lines += [
        f"  by reference {path} (not saved again; read from {r.state_dir} at every restore)"
        for path, r in self.references.items()
    ]
    return "\n".join(lines)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class InitialCheckpoint:
  """The checkpoint a fine-tuning run starts from (see the module docstring)."""

  path: str = gin.REQUIRED  # a MODEL_DIR, its checkpoints/ directory, or one step's directory
  step: Optional[int] = None  # None: the newest
  assignment_map: Sequence[Rule] = ()
  strict: bool = True
  new_experts: Optional[str] = None  # "fresh" | "copy": grow a checkpoint's experts
  upcycle: bool = False  # a dense checkpoint into a MoE model: experts copy the FFNs
  # Regexes over '/'-joined model paths: frozen parameters kept by reference, not saved again.
  by_reference: Sequence[str] = ()

  def state_dir(self) -> str:
    """The `state` directory of the chosen step."""
    path = os.path.abspath(self.path)
    if os.path.isdir(os.path.join(path, "state")):
      return os.path.join(path, "state")
    for root in (os.path.join(path, "checkpoints"), path):
      steps = sorted(int(n) for n in _listdir(root) if n.isdigit())
      if steps:
        if self.step is not None and self.step not in steps:
          raise MissingFileError(
              f"InitialCheckpoint.step={self.step}: {root} holds steps {steps}; pick one, or "
              "None for the newest."
          )
        return os.path.join(root, str(self.step if self.step is not None else steps[-1]), "state")
    raise MissingFileError(
        f"INITIAL_CHECKPOINT_PATH={self.path!r} holds no checkpoint (looked for "
        f"{os.path.join(path, 'checkpoints', '<step>')} and {os.path.join(path, '<step>')}); "
        "point it at the MODEL_DIR of the run to start from."
    )

  def load(self, abstract_params: Any, fresh_params: Any) -> tuple[Any, Report]:
    """The model's parameters: read from the checkpoint where the plan says, else `fresh_params`.

    `abstract_params` carries each parameter's shape, dtype and sharding; what is read is
    placed in those shards directly.
    """
    state_dir = self.state_dir()
    try:
      saved = checkpoints.saved_params(state_dir)
    except Exception as e:  # pylint: disable=broad-except  (any unreadable metadata)
      raise ConfigError(
          f"INITIAL_CHECKPOINT_PATH: {state_dir} cannot be read as a podzoo checkpoint "
          f"({type(e).__name__}: {str(e)[:200]})."
      ) from e
    wanted = {"/".join(k): v for k, v in traverse_util.flatten_dict(abstract_params).items()}
    upcycle_interval = self._upcycle_interval(state_dir, saved, abstract_params, wanted)
    sources, report = self._plan(wanted, saved, upcycle_interval)
    reads = {
        origin: _read_target(wanted[p], saved[origin], how) for p, (origin, how) in sources.items()
    }
    target = {
        "params": traverse_util.unflatten_dict({tuple(o.split("/")): t for o, t in reads.items()})
    }
    read = checkpoints.read_params(state_dir, target["params"]) if reads else {}
    read_flat = param_references.flat(read)
    params = {}
    for key, fresh in traverse_util.flatten_dict(fresh_params).items():
      path = "/".join(key)
      if path not in sources:
        params[key] = fresh
        continue
      origin, how = sources[path]
      value = read_flat[origin]
      if how is not None:
        params[key] = jax.jit(how, out_shardings=wanted[path].sharding)(value, fresh)
      else:
        # A buffer of its own per parameter and shard (checkpoints.own_buffers): the train
        # step donates them, and two parameters may be read from one array.
        params[key] = checkpoints.own_buffers(value)
    report.references = self._references(
        state_dir, sources, {"/".join(k): v for k, v in params.items()}
    )
    return traverse_util.unflatten_dict(params), report

  def _references(
      self, state_dir: str, sources: dict[str, Source], params: dict[str, jax.Array]
  ) -> dict[str, param_references.Reference]:
    """Where each `by_reference` parameter lives: its place in the checkpoint, or, when the
    checkpoint itself keeps it by reference, that reference's source."""
    patterns = [re.compile(p) for p in self.by_reference]
    matched = {p for p in params if any(r.fullmatch(p) for r in patterns)}
    unmatched = [
        p for p, r in zip(self.by_reference, patterns) if not any(map(r.fullmatch, params))
    ]
    if unmatched:
      raise ConfigError(
          f"InitialCheckpoint.by_reference patterns {unmatched} match no parameter of the "
          f"model (e.g. {', '.join(sorted(params)[:3])}); fix the pattern (a regex over the "
          "whole '/'-joined path)."
      )
    not_read = sorted(p for p in matched if p not in sources or sources[p][1] is not None)
    if not_read:
      raise ConfigError(
          f"InitialCheckpoint.by_reference names {', '.join(not_read)}, which the run does not "
          "read unchanged from INITIAL_CHECKPOINT_PATH (initialised fresh or reshaped): only a "
          "parameter read as the checkpoint holds it can be kept by reference. Drop it from "
          "by_reference."
      )
    inherited = param_references.saved(os.path.dirname(state_dir))
    return {
        path: inherited.get(sources[path][0])
        or param_references.reference_to(state_dir, sources[path][0], params[path])
        for path in sorted(matched)
    }

  def _upcycle_interval(
      self, state_dir: str, saved: dict, abstract_params: Any, wanted: dict
  ) -> Optional[int]:
    """The MoE model's layer interval when a dense checkpoint is to be upcycled, else None."""
    moe_error = checkpoints.dense_into_moe_error(saved, abstract_params)
    if moe_error and not self.upcycle:
      raise ConfigError(
          f"INITIAL_CHECKPOINT_PATH: {state_dir} holds a dense model: {moe_error} To start "
          "every expert as a copy of its layer's dense FFN (sparse upcycling), set "
          "InitialCheckpoint.upcycle = True."
      )
    if self.upcycle and not moe_error:
      raise ConfigError(
          f"InitialCheckpoint.upcycle=True, but {state_dir} is not a dense model's checkpoint "
          "for this MoE model (it has experts, or the model has none); set upcycle = False."
      )
    return growth.layer_interval(list(wanted)) if self.upcycle else None

  def _plan(
      self,
      wanted: dict[str, jax.ShapeDtypeStruct],
      saved: dict[str, jax.ShapeDtypeStruct],
      upcycle_interval: Optional[int] = None,
  ) -> tuple[dict[str, Source], Report]:
    """Model path -> (checkpoint path, reshape or None) for each parameter to read, and the
    report."""
    rules = [(re.compile(pattern), source) for pattern, source in self.assignment_map]
    used_rules, sources, report, missing = set(), {}, Report(), []
    for path in sorted(wanted):
      rule = next(((i, m, s) for i, (r, s) in enumerate(rules) if (m := r.fullmatch(path))), None)
      how = None
      if rule is not None:
        index, match, source = rule
        used_rules.add(index)
        if source is None:
          report.fresh.append(path)
          continue
        origin = match.expand(source)
        if origin not in saved:
          raise ConfigError(
              f"InitialCheckpoint.assignment_map rule {self.assignment_map[index]!r} maps "
              f"{path} to {origin}, which the checkpoint does not hold."
          )
      elif upcycle_interval is not None:
        found = growth.upcycle_source(path, upcycle_interval)
        if found is None:  # a router
          report.fresh.append(path)
          continue
        origin, how = found
        if origin not in saved:
          missing.append(path)
          continue
      elif path in saved:
        origin = path
      else:
        missing.append(path)
        continue
      if how is None and tuple(saved[origin].shape) != tuple(wanted[path].shape):
        how = growth.growth(
            path, tuple(saved[origin].shape), tuple(wanted[path].shape), self.new_experts
        )
        if how is None:
          raise ConfigError(
              f"Parameter {path}: the checkpoint's {origin} has shape "
              f"{tuple(saved[origin].shape)}, the model's {tuple(wanted[path].shape)}. Add "
              f"({path!r}, None) to InitialCheckpoint.assignment_map to initialise it fresh, "
              "or map it to a parameter of that shape."
          )
      if how is not None:
        _check_reshape(path, origin, how, saved[origin], wanted[path])
      sources[path] = (origin, how)
      if how is not None:
        report.reshaped.append((path, origin))
      elif origin == path:
        report.loaded.append(path)
      else:
        report.mapped.append((path, origin))
    unused_rules = [self.assignment_map[i] for i in range(len(rules)) if i not in used_rules]
    if unused_rules:
      raise ConfigError(
          f"InitialCheckpoint.assignment_map rules {unused_rules} match no parameter of the "
          f"model (e.g. {', '.join(sorted(wanted)[:3])}); fix the pattern (a regex over the "
          "whole '/'-joined path)."
      )
    if missing and self.strict:
      raise ConfigError(
          f"{len(missing)} parameters of the model are not in the checkpoint "
          f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}). Map them with "
          "InitialCheckpoint.assignment_map, e.g. (pattern, 'checkpoint/path') or "
          "(pattern, None) to initialise them fresh, or set InitialCheckpoint.strict=False."
      )
    report.fresh += missing
    report.ignored = sorted(set(saved) - {origin for origin, _ in sources.values()})
    return sources, report


def _check_reshape(
    path: str,
    origin: str,
    how: growth.Transform,
    saved: jax.ShapeDtypeStruct,
    wanted: jax.ShapeDtypeStruct,
) -> None:
  """A reshape (growth, upcycling) must give the model's shape; else name both."""
  try:
    shape = jax.eval_shape(how, saved, wanted).shape
  except (TypeError, ValueError) as e:
    shape = f"no shape ({e})"
  if shape != tuple(wanted.shape):
    raise ConfigError(
        f"Parameter {path}: the checkpoint's {origin} {tuple(saved.shape)} cannot be reshaped "
        f"to the model's {tuple(wanted.shape)} (it gives {shape}). Upcycling needs the MoE model's "
        "dims, layer count and expert width (MoeConfig.mlp_dim) to be the dense model's."
    )


def _read_target(
    wanted: jax.ShapeDtypeStruct, saved: jax.ShapeDtypeStruct, how: Optional[growth.Transform]
) -> jax.ShapeDtypeStruct:
  """What to read for one parameter: the model's own shards, or (to be reshaped) the saved
  array whole on every device of the model's mesh."""
  if how is None:
    return wanted
  sharding = wanted.sharding
  if isinstance(sharding, jax.sharding.NamedSharding):
    sharding = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
  return jax.ShapeDtypeStruct(saved.shape, wanted.dtype, sharding=sharding)


def _listdir(path: str) -> list[str]:
  try:
    return os.listdir(path)
  except OSError:
    return []
