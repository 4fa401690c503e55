"""Orbax checkpoints: atomic saves, keep-N, automatic resume, restore onto any mesh.

Each step directory holds "state" (step, params, optimizer state, rng), "data" (the number
of batches read, as JSON), "data_iterator" (each process's input-pipeline state, see
data_iterator_checkpoint.py) and, for a run that keeps frozen parameters by reference to its
initial checkpoint, "references" (where they live, see param_references.py), so a resumed run reads exactly the batches an uninterrupted
run would, without reading the earlier ones again. Orbax writes a step into a temporary
directory and renames it when complete, so a half-written step is never listed; a step that
is listed but cannot be read (a damaged file) is skipped in favour of the previous one, and
the log says so. The run that trained on from the older step moves the damaged step aside
when it next saves (to `damaged-<step>-<UTC time>/` beside the steps, a name Orbax does not
list), so the retrained step can be written under that number and keep-N counts only
readable steps. A save that fails on the disk (full, read-only) raises CheckpointDirError;
the steps saved before it stay as they were. Its temporary directory is left: Orbax's
threads may still write into it after the failure, it is never listed, and Orbax deletes it
before it saves that step again.
"""

import logging
import os
import re
import time
import traceback
from typing import Any, Iterable, Optional

import gin
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import orbax.checkpoint as ocp

from model_zoo.errors import ConfigError, UserError
from model_zoo.moe import layer as moe_layer
from trainers import data_iterator_checkpoint, param_references, train_state


class CheckpointShapeError(ConfigError):
  """MODEL_DIR holds checkpoints of a different model, or none that can be read."""


class CheckpointDirError(UserError, OSError):
  """The checkpoint directory cannot be created or written (a file, no permission, disk full)."""


# How tensorstore, which writes the arrays, names the OS error behind the ValueError it raises:
# "RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']".
_TENSORSTORE_OS_ERROR = re.compile(r"\[os_error_code='(\d+)'\]")


def _os_error(error: Optional[BaseException]) -> Optional[OSError]:
  """The OS error behind a failed save, or None when the failure is a bug.

  Orbax re-raises what its threads raised, at times chained to another exception, and
  tensorstore reports an OS error as a ValueError, so the whole chain is searched.
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError):
      return error
    code = _TENSORSTORE_OS_ERROR.search(str(error)) if isinstance(error, ValueError) else None
    if code:
      return OSError(int(code[1]), os.strerror(int(code[1])))
    error = error.__cause__ or error.__context__
  return None


def _not_an_orbax_os_error(record: logging.LogRecord) -> bool:
  """False for the traceback of an OS error (disk full, read-only) raised in Orbax's code: Orbax
  logs one for each of its threads (a page apiece), and asyncio more when it drops their
  futures, maybe at exit, for what save() reports as one CheckpointDirError."""
  error = record.exc_info[1] if record.exc_info else None
  if _os_error(error) is None:
    return True
  orbax = os.path.dirname(ocp.__file__)
  return not any(
      frame.f_code.co_filename.startswith(orbax)
      for frame, _ in traceback.walk_tb(error.__traceback__)
  )


def _to_tree(state: train_state.TrainState) -> dict:
  return {
      "step": state.step,
      "params": state.params,
      "opt_state": state.opt_state,
      "rng": state.rng,
  }


def own_buffers(tree: Any) -> Any:
  """`tree` with every array, and each device's shard of it, in a buffer of its own.

  What Orbax reads may share memory: on a CPU's host-memory devices the shards of a
  replicated array came back as one buffer. The train step donates its state, and donating
  a shared buffer corrupted the heap (a run crashed later, in XLA's compiler or serializer).
  """
  return jax.tree.map(lambda x: jnp.copy(x) if isinstance(x, jax.Array) else x, tree)


@gin.configurable
class Checkpointer:
  """Wraps ocp.CheckpointManager for TrainStates plus a JSON data position."""

  def __init__(self, directory: str, *, keep: Optional[int] = 3, save_period: int = 1000):
    self.directory = os.path.abspath(directory)
    self.save_period = save_period
    try:
      self.manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(
              max_to_keep=keep, create=True, enable_async_checkpointing=False
          ),
          item_handlers={
              "state": ocp.StandardCheckpointHandler(),
              "data": ocp.JsonCheckpointHandler(),
              data_iterator_checkpoint.ITEM: data_iterator_checkpoint.DataIteratorHandler(),
              param_references.ITEM: ocp.JsonCheckpointHandler(),
          },
      )
    except OSError as e:  # MODEL_DIR is a file, or not writable
      raise self._dir_error("create", e) from e
    for logger in ("absl", "asyncio"):  # a filter is added once, however many Checkpointers
      logging.getLogger(logger).addFilter(_not_an_orbax_os_error)
    # Steps newer than the one restore_latest() fell back to, found damaged; None when no
    # fallback restore happened since the last save (see _set_aside_damaged).
    self._damaged: Optional[list[int]] = None
    # Parameters saved as references, not values (param_references.py): set by the run that
    # read them from its initial checkpoint, or by restore_latest() from the step it read.
    self.references: dict[str, param_references.Reference] = {}

  def _dir_error(self, action: str, error: OSError) -> CheckpointDirError:
    return CheckpointDirError(
        f"Cannot {action} the checkpoint directory {self.directory} ({error}); set "
        "--gin.MODEL_DIR to a writable directory with free space.",
    )

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def should_save(self, step: int) -> bool:
    return self.save_period > 0 and step % self.save_period == 0

  def save(
      self,
      state: train_state.TrainState,
      data_position: dict,
      data_iterator: Optional[data_iterator_checkpoint.SavableIterator] = None,
  ) -> int:
    """Saves `state` with the data position (and, given, this process's iterator state)."""
    step = int(jax.device_get(state.step))
    self._set_aside_damaged()
    if step in self.manager.all_steps():
      return step
    last_good = self.manager.latest_step()
    params = param_references.without(state.params, self.references)
    items = {
        "state": ocp.args.StandardSave(_to_tree(state.replace(params=params))),
        "data": ocp.args.JsonSave(data_position),
    }
    if self.references:
      items[param_references.ITEM] = ocp.args.JsonSave(param_references.to_json(self.references))
    if data_iterator is not None:
      items[data_iterator_checkpoint.ITEM] = data_iterator_checkpoint.DataIteratorSave(
          data_iterator
      )
    try:
      self.manager.save(step, args=ocp.args.Composite(**items), force=True)
      self.manager.wait_until_finished()
    except Exception as e:  # disk full, read-only, no permission: the user's to fix
      os_error = _os_error(e)
      if os_error is None:
        raise
      raise self._save_error(step, last_good, os_error) from e
    return step

  def _save_error(self, step: int, last_good: Optional[int], error: OSError) -> CheckpointDirError:
    kept, rerun = "No earlier checkpoint exists", "start afresh"
    if last_good is not None:
      kept = f"The last good checkpoint, step {last_good}, is intact"
      rerun = f"resume from step {last_good}"
    return CheckpointDirError(
        f"Could not save checkpoint step {step} in {self.directory}: {error.strerror or error}. "
        f"{kept}. Free disk space there, or make --gin.MODEL_DIR writable, then rerun the same "
        f"command to {rerun}."
    )

  def restore_latest(
      self,
      abstract_state: train_state.TrainState,
      only_step: Optional[int] = None,
      params_only: bool = False,
  ) -> Optional[tuple[train_state.TrainState, dict]]:
    """The newest readable checkpoint (or `only_step`) restored into `abstract_state`'s shapes
    and shardings.

    With `params_only` (eval, inference) only the step and the parameters are read: the
    optimizer state is neither read nor needed, and comes back as None. Raises
    CheckpointShapeError when the checkpoint's parameters have other shapes than the
    model's (a different model in MODEL_DIR), or, when restoring everything, its optimizer
    state another structure (another optimizer); returns None when there is none.
    """
    target = _to_tree(abstract_state)
    if params_only:
      target = {"step": target["step"], "params": target["params"]}
    wanted = param_references.flat(target["params"])
    newest_first = sorted(self.manager.all_steps(), reverse=True)
    candidates = newest_first if only_step is None else [only_step]
    newest_error = ""
    damaged = []
    for step in candidates:
      references = self._saved_references(step)
      own = {**target, "params": param_references.without(target["params"], references or {})}
      if references is not None:  # else its shapes cannot be told: restored as damaged below
        self._check_shapes(step, own, references, wanted)
      try:
        if references is None:
          raise ValueError("its list of parameters kept by reference cannot be read")
        if params_only:
          restored = {"state": restore_subtree(self._state_dir(step), own), "data": {}}
        else:
          restored = self.manager.restore(
              step,
              args=ocp.args.Composite(
                  state=ocp.args.StandardRestore(own), data=ocp.args.JsonRestore()
              ),
          )
      except Exception as e:  # a damaged step: fall back to the previous one
        newest_error = newest_error or (
            f"step {step}: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
        )
        damaged.append(step)
        logging.warning(
            "Checkpoint at step %d in %s cannot be read (%s: %s); falling back to the "
            "previous checkpoint.",
            step,
            self.directory,
            type(e).__name__,
            str(e)[:300],
        )
        print(
            f"WARNING: checkpoint step {step} in {self.directory} is damaged "
            f"({type(e).__name__}); falling back to the previous one.",
            flush=True,
        )
        continue
      tree = own_buffers(restored["state"])
      if only_step is None:  # a run that trains on from here sets the damaged steps aside
        self._damaged = damaged
      self.references = references
      state = abstract_state.replace(
          step=tree["step"],
          params=param_references.with_values(tree["params"], read_references(references, wanted)),
          opt_state=tree.get("opt_state"),
          rng=tree.get("rng"),
      )
      return state, dict(restored["data"] or {})
    if candidates:
      raise CheckpointShapeError(
          f"None of the checkpoints in {self.directory} (steps {sorted(candidates)}) can be "
          f"read ({newest_error}). They are damaged, or were written by another "
          "model or optimizer config: use that config, move them away to start afresh, or "
          "point --gin.MODEL_DIR at another run."
      )
    return None

  def restore_data_iterator(
      self, step: int, iterator: data_iterator_checkpoint.SavableIterator
  ) -> Optional[str]:
    """Puts `iterator` at the input position saved with `step`. Returns None, or why the step
    has no position this run can use (the caller then replays the data to it)."""
    if not os.path.isdir(os.path.join(self.directory, str(step), data_iterator_checkpoint.ITEM)):
      return "the checkpoint holds no input-pipeline state"
    try:
      self.manager.restore(
          step,
          args=ocp.args.Composite(
              **{
                  data_iterator_checkpoint.ITEM: data_iterator_checkpoint.DataIteratorRestore(
                      iterator
                  )
              }
          ),
      )
    except Exception as e:  # another pipeline, process count or a damaged file: replay instead
      return (
          f"its input-pipeline state cannot be used, {type(e).__name__}: "
          f"{' '.join(str(e).split())[:300]}; the replayed batches are the same unless the "
          "task, its preprocessing or the number of processes changed"
      )
    return None

  def _set_aside_damaged(self) -> None:
    """Moves the steps restore_latest() found damaged (and fell back past) out of Orbax's
    sight, before the first save after that restore.

    Done at save time, not at restore time, so that eval and inference, which restore
    from the same directory, never move files. The directory is kept for inspection as
    `damaged-<step>-<UTC time>` (Orbax lists only names that are step numbers); process 0
    moves it, every process then rereads the list of steps.
    """
    if self._damaged is None:
      return
    damaged, self._damaged = self._damaged, None
    if jax.process_index() == 0:
      for step in damaged:
        self._move_aside(step)
    if jax.process_count() > 1:  # every process called restore_latest, so all come here
      multihost_utils.sync_global_devices("podzoo_checkpoints_set_aside_damaged")
    if damaged or jax.process_count() > 1:
      self.manager.reload()

  def _move_aside(self, step: int) -> None:
    source = os.path.join(self.directory, str(step))
    if not os.path.isdir(source):  # already moved or deleted by someone else
      return
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = os.path.join(self.directory, f"damaged-{step}-{stamp}")
    suffix = 1
    while os.path.exists(target):
      target = os.path.join(self.directory, f"damaged-{step}-{stamp}-{suffix}")
      suffix += 1
    try:
      os.rename(source, target)
    except OSError as e:
      raise self._dir_error(f"move the damaged step {step} aside in", e) from e
    print(
        f"WARNING: moved the damaged checkpoint step {step} to {target} (kept for "
        "inspection; delete it when no longer needed).",
        flush=True,
    )

  def _state_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step), "state")

  def _saved_references(self, step: int) -> Optional[dict[str, param_references.Reference]]:
    """What `step` keeps by reference; None when that list cannot be read (a damaged step)."""
    try:
      return param_references.saved(os.path.join(self.directory, str(step)))
    except Exception:  # pylint: disable=broad-except  (restore_latest falls back past it)
      return None

  def _check_shapes(
      self,
      step: int,
      target: dict,
      references: dict[str, param_references.Reference],
      model_params: dict[str, Any],
  ) -> None:
    """`target` holds what the step saved itself; `model_params` every parameter by path."""
    for path, reference in references.items():
      model = model_params.get(path)
      if model is None or tuple(model.shape) != reference.shape:
        model_shape = tuple(model.shape) if model is not None else "not in the model"
        raise CheckpointShapeError(
            f"MODEL_DIR {os.path.dirname(self.directory)} holds a checkpoint (step {step}) of "
            f"a different model: {path}, kept by reference, has shape {reference.shape}, the "
            f"model {model_shape}. Use a new --gin.MODEL_DIR, or the model config that wrote "
            "this checkpoint."
        )
    try:
      metadata = self.manager.item_metadata(step)["state"]
      saved = _shapes(metadata["params"])
    except Exception:  # unreadable or foreign metadata: restore() will report it and fall back
      return
    moe_error = dense_into_moe_error(_named_shapes(metadata["params"]), target["params"])
    if moe_error:
      raise CheckpointShapeError(
          f"MODEL_DIR {os.path.dirname(self.directory)} holds a checkpoint (step {step}) of a "
          f"dense model: {moe_error} Use a new --gin.MODEL_DIR; to start the MoE model from "
          "this one (every expert a copy of its layer's FFN), add gin/runs/finetune.gin with "
          "INITIAL_CHECKPOINT_PATH set to it and InitialCheckpoint.upcycle = True."
      )
    wanted = _shapes(target["params"])
    diffs = [
        f"{k}: checkpoint {saved.get(k)} vs model {v}"
        for k, v in wanted.items()
        if saved.get(k) != v
    ]
    diffs += [f"{k}: in the checkpoint but not in the model" for k in saved if k not in wanted]
    if diffs:
      raise CheckpointShapeError(
          f"MODEL_DIR {os.path.dirname(self.directory)} holds a checkpoint (step {step}) of a different "
          f"model: {'; '.join(diffs[:5])}{' ...' if len(diffs) > 5 else ''}. Use a new --gin.MODEL_DIR, "
          "or the model config that wrote this checkpoint."
      )
    if "opt_state" in target and "opt_state" in metadata:
      self._check_optimizer(step, metadata["opt_state"], target["opt_state"])

  def _check_optimizer(self, step: int, saved: Any, wanted: Any) -> None:
    """Another optimizer's state is named as such, not taken for a damaged checkpoint."""
    saved_shapes, wanted_shapes = _named_shapes(saved), _named_shapes(wanted)
    if saved_shapes == wanted_shapes:
      return
    differing = sorted(set(saved_shapes) ^ set(wanted_shapes)) or [
        k for k in sorted(wanted_shapes) if saved_shapes[k] != wanted_shapes[k]
    ]
    example = differing[0]
    raise CheckpointShapeError(
        f"MODEL_DIR {os.path.dirname(self.directory)} holds a checkpoint (step {step}) whose "
        f"optimizer state comes from another optimizer config ({len(saved_shapes)} state "
        f"arrays vs {len(wanted_shapes)} now; e.g. {example}). Use the optimizer config that "
        "wrote it, or start a new MODEL_DIR from its parameters with gin/runs/finetune.gin "
        "(INITIAL_CHECKPOINT_PATH), which starts a fresh optimizer."
    )

  def close(self) -> None:
    self.manager.close()


def dense_into_moe_error(saved_paths: Iterable[str], model_params: Any) -> Optional[str]:
  """Why a checkpoint without experts cannot fill a model with them, or None if that is not
  the case. `saved_paths` are '/'-joined parameter paths."""
  has_moe = lambda paths: any(moe_layer.MODULE_NAME in p.split("/") for p in paths)
  if has_moe(saved_paths) or not has_moe(_named_shapes(model_params)):
    return None
  return (
      "its layers have no experts, and this model has mixture-of-experts layers "
      "(TransformerConfig.moe), stacked in blocks of MoeConfig.moe_layer_interval layers."
  )


def read_params(state_dir: str, target: Any) -> dict:
  """`target`'s parameters (abstract, with shardings) from the step whose state directory is
  `state_dir`; those the step keeps by reference are read from their sources and checked."""
  references = param_references.saved(os.path.dirname(state_dir))
  wanted = param_references.flat(target)
  references = {path: r for path, r in references.items() if path in wanted}
  own = param_references.without(target, references)
  params = restore_subtree(state_dir, {"params": own})["params"] if own else {}
  return param_references.with_values(params, read_references(references, wanted))


def read_references(
    references: dict[str, param_references.Reference], wanted: dict[str, Any]
) -> dict[str, jax.Array]:
  """Each parameter kept by reference, read from its source onto `wanted`'s sharding and dtype,
  and checked against its fingerprint."""
  values = {}
  for path, reference in references.items():
    source = jax.ShapeDtypeStruct(reference.shape, reference.dtype, sharding=wanted[path].sharding)
    try:
      read = read_params(reference.state_dir, param_references.unflat({reference.source: source}))
    except param_references.ReferencedCheckpointError:
      raise
    except Exception as e:  # gone, moved or damaged: the user's to put back
      raise param_references.source_error(path, reference, e) from e
    value = param_references.flat(read)[reference.source]
    reference.check(path, value)
    values[path] = own_buffers(value.astype(wanted[path].dtype))
  return values


def restore_subtree(state_dir: str, target: dict) -> dict:
  """Only `target`'s part (e.g. {"step", "params"}) of a saved state, placed as its leaves'
  shardings say; nothing else in the checkpoint is read. A part the checkpoint lacks is an
  error (Orbax would hand back its placeholder)."""
  restored = ocp.PyTreeCheckpointer().restore(
      state_dir,
      args=ocp.args.PyTreeRestore(
          item=target,
          restore_args=ocp.checkpoint_utils.construct_restore_args(target),
          partial_restore=True,
      ),
  )
  flat = jax.tree_util.tree_flatten_with_path(restored)[0]
  missing = [jax.tree_util.keystr(p) for p, x in flat if isinstance(x, jax.ShapeDtypeStruct)]
  if missing:
    raise ValueError(f"{state_dir} holds no {', '.join(missing[:3])}")
  return restored


def saved_params(state_dir: str) -> dict[str, jax.ShapeDtypeStruct]:
  """Shape and dtype of each saved parameter (and each kept by reference), by '/'-joined path,
  from the metadata alone."""
  metadata = ocp.StandardCheckpointer().metadata(state_dir).item_metadata.tree["params"]
  flat = jax.tree_util.tree_flatten_with_path(metadata, is_leaf=lambda x: hasattr(x, "shape"))[0]
  shapes = {
      "/".join(str(k.key) for k in path): jax.ShapeDtypeStruct(tuple(m.shape), m.dtype)
      for path, m in flat
  }
  for path, reference in param_references.saved(os.path.dirname(state_dir)).items():
    shapes[path] = jax.ShapeDtypeStruct(reference.shape, reference.dtype)
  return shapes


def _named_shapes(tree: Any) -> dict[str, tuple]:
  """Shapes by a path of plain names, the same for a state and its saved metadata (Orbax
  saves an optax NamedTuple's fields as dict keys)."""
  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
  return {
      "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path): (
          tuple(leaf.shape)
      )
      for path, leaf in flat
      if hasattr(leaf, "shape")
  }


def _shapes(tree: Any) -> dict[str, tuple]:
  flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
  return {
      jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in flat if hasattr(leaf, "shape")
  }
