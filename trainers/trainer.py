"""Train and eval steps: sharded init, gradient accumulation over microbatches, metrics.

The Trainer only talks to the Model API (`init`, `loss_fn`) and the Partitioner, so MoE
models (auxiliary losses in a Flax collection) need no changes here.
"""

from typing import Any, Callable, Mapping

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from model_zoo import metrics as metrics_lib
from model_zoo.errors import ConfigError
from model_zoo.metrics import Average
from trainers import optimizers, partitioning, train_state

Batch = Mapping[str, Any]


def _example_batch(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, jax.Array]:
  return {k: jnp.ones(s, jnp.int32) for k, s in shapes.items()}


def _sum_of_squares(x: jax.Array) -> jax.Array:
  """sum(x**2) in fp32 as the trace of the Gram matrix of x's rows of 8: one matmul that reads
  x once. A plain sum of squares shares its `x**2` with Adam's (XLA merges the two), and XLA's
  CPU backend then writes the squares out as a parameter-sized buffer of their own: 2.5x the
  time of this on (8, 512, 1536) gradients."""
  rows = x.reshape(-1, 8 if x.size % 8 == 0 else 1).astype(jnp.float32)
  return jnp.trace(jnp.einsum("ik,il->kl", rows, rows, precision=jax.lax.Precision.HIGHEST))


@gin.configurable
class Trainer:
  """Owns the compiled train/eval steps of one model on one mesh."""

  def __init__(
      self,
      model,
      partitioner: partitioning.Partitioner,
      optimizer: optax.GradientTransformation = gin.REQUIRED,
      learning_rate_schedule: Callable = gin.REQUIRED,
      num_microbatches: int = 1,
      seed: int = 0,
  ):
    if num_microbatches < 1:
      raise ConfigError(f"Trainer.num_microbatches={num_microbatches} must be >= 1.")
    self.model = model
    self.partitioner = partitioner
    self.optimizer = optimizer
    self.schedule = learning_rate_schedule
    self.num_microbatches = num_microbatches
    self.seed = seed
    self._train_step = None
    self._eval_step = None

  # --- state -----------------------------------------------------------------------------
  def abstract_state(self, batch_shapes: Mapping[str, tuple[int, ...]]):
    """(shape-only TrainState, its shardings); nothing is allocated."""
    rng = jax.random.PRNGKey(self.seed)
    with self.partitioner.context():
      boxed = jax.eval_shape(lambda r: self.model.init(r, _example_batch(batch_shapes)), rng)
    params_shardings = self.partitioner.param_shardings(boxed)
    abstract_params = nn.unbox(boxed)
    opt_state = jax.eval_shape(self.optimizer.init, abstract_params)
    replicated = self.partitioner.sharding(P())
    shardings = train_state.TrainState(
        step=replicated,
        params=params_shardings,
        opt_state=self.partitioner.like_params_shardings(
            opt_state, abstract_params, params_shardings
        ),
        rng=replicated,
        tx=self.optimizer,
    )
    abstract = train_state.TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32),
        params=abstract_params,
        opt_state=opt_state,
        rng=jax.ShapeDtypeStruct(rng.shape, rng.dtype),
        tx=self.optimizer,
    )
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )
    return abstract, shardings

  def init_state(self, batch_shapes: Mapping[str, tuple[int, ...]], shardings=None):
    """A freshly initialised TrainState, created directly in its shards."""
    if shardings is None:
      _, shardings = self.abstract_state(batch_shapes)

    def init(rng):
      params_rng, run_rng = jax.random.split(rng)
      params = nn.unbox(self.model.init(params_rng, _example_batch(batch_shapes)))
      return train_state.TrainState.create(params, self.optimizer, run_rng)

    replicated = self.partitioner.sharding(P())
    return self.partitioner.compile(init, replicated, shardings)(jax.random.PRNGKey(self.seed))

  # --- steps ------------------------------------------------------------------------------
  def _trained_grad_norm(self, grads) -> jax.Array:
    """Global gradient norm over the parameters the optimizer trains (not frozen ones)."""
    trained = jax.tree.leaves(optimizers.trained_mask(self.optimizer, grads))
    squares = [_sum_of_squares(g) for g, t in zip(jax.tree.leaves(grads), trained) if t]
    return jnp.sqrt(sum(squares, jnp.zeros((), jnp.float32)))

  def _grads_and_metrics(self, params, batch, rng):
    normalizer = self.model.loss_normalizer(batch)
    grad_fn = jax.value_and_grad(self.model.loss_fn, has_aux=True)
    k = self.num_microbatches
    if k == 1:
      (_, metrics), grads = grad_fn(params, batch, rng, normalizer)
      return grads, metrics

    def split(x):  # strided rows, so every microbatch stays spread over the data axis
      return jnp.swapaxes(x.reshape((x.shape[0] // k, k) + x.shape[1:]), 0, 1)

    micro = jax.tree.map(split, batch)

    def body(carry, inputs):
      grads, metrics = carry
      index, microbatch = inputs
      (_, m), g = grad_fn(params, microbatch, jax.random.fold_in(rng, index), normalizer)
      return (jax.tree.map(jnp.add, grads, g), jax.tree.map(jnp.add, metrics, m)), None

    first = jax.tree.map(lambda x: x[0], micro)
    (_, m0), g0 = grad_fn(params, first, jax.random.fold_in(rng, 0), normalizer)
    rest = jax.tree.map(lambda x: x[1:], micro)
    (grads, metrics), _ = jax.lax.scan(body, (g0, m0), (jnp.arange(1, k), rest))
    return grads, metrics

  def _train_step_fn(self, state: train_state.TrainState, batch: Batch):
    rng = jax.random.fold_in(state.rng, state.step)
    grads, metrics = self._grads_and_metrics(state.params, batch, rng)
    metrics = dict(metrics)
    metrics["target_tokens"] = Average.of(self.model.num_target_tokens(batch))  # per step
    metrics["learning_rate"] = Average.of(self.schedule(state.step))
    metrics["grad_norm"] = Average.of(self._trained_grad_norm(grads))
    return state.apply_gradients(grads), metrics

  def _eval_step_fn(self, params, batch: Batch):
    return self.model.loss_fn(params, batch)[1]

  def params_are_finite(self, state) -> bool:
    """False if any parameter is NaN/Inf (checked before a checkpoint is written)."""
    leaves = jax.tree.leaves(state.params)
    return bool(
        jax.jit(lambda ls: jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in ls])))(leaves)
    )

  def _batch_shardings(self, batch: Batch):
    return {k: self.partitioner.batch_sharding(np.ndim(v)) for k, v in batch.items()}

  def train_step(self, state, batch: Batch):
    """One optimizer step on a global batch; returns (new state, metrics on device)."""
    if self._train_step is None:
      global_rows = len(next(iter(batch.values()))) * jax.process_count()
      self.partitioner.check_batch_size(global_rows)
      if global_rows % (self.num_microbatches * self.partitioner.data_parallel_size):
        raise ConfigError(
            f"BATCH_SIZE={global_rows} must split into Trainer.num_microbatches={self.num_microbatches} "
            f"microbatches that each divide over the data-parallel size {self.partitioner.data_parallel_size}."
        )
      shardings = jax.tree.map(lambda x: x.sharding, state)
      self._train_step = self.partitioner.compile(
          self._train_step_fn,
          (shardings, self._batch_shardings(batch)),
          (shardings, None),
          donate_argnums=(0,),
      )
    return self._train_step(state, self.partitioner.shard_batch(batch))

  def lower_train_step(self, state, batch: Batch) -> jax.stages.Lowered:
    """The compiled train step's program for this state and batch (after one `train_step`):
    `.compile()` gives its HLO and XLA's memory analysis."""
    if self._train_step is None:
      raise RuntimeError("lower_train_step needs a train_step first (that compiles it).")
    return self._train_step.lower(state, self.partitioner.shard_batch(batch))

  def eval_step(self, state, batch: Batch):
    if self._eval_step is None:
      params_shardings = jax.tree.map(lambda x: x.sharding, state.params)
      self._eval_step = self.partitioner.compile(
          self._eval_step_fn, (params_shardings, self._batch_shardings(batch)), None
      )
    return self._eval_step(state.params, self.partitioner.shard_batch(batch))

  def evaluate(self, state, batches) -> dict[str, float]:
    """Mean metrics over an iterable of host batches.

    With several processes each reads its own shard, and shards may hold different numbers
    of batches: every step is collective, so a process that has run out keeps stepping on
    a copy of its last batch with zero loss weights until all have run out.
    """
    total: dict[str, Average] = {}
    iterator, last = iter(batches), None
    while True:
      batch = next(iterator, None)
      if jax.process_count() > 1:
        any_left = multihost_utils.process_allgather(np.int32(batch is not None)).max() > 0
        if batch is None and any_left and last is not None:
          batch = self.model.FEATURE_CONVERTER_CLS.without_loss(last)
        if not any_left:
          break
      if batch is None:
        break
      last = batch
      total = metrics_lib.merge(total, self.eval_step(state, batch))
    return metrics_lib.values(total) if total else {}
