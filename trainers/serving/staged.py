"""A decoder-only model placed on a device group as AlpaServe places it: pipeline stages of
contiguous layers (model_zoo/pipeline_stages.py), stage k on devices of its own, each
sharded over its `tensor` devices by the partitioner's logical axis rules.

A batch runs stage after stage, its activations copied from one stage's devices to the
next's; JAX dispatches asynchronously, so while stage k+1 works on one batch, stage k can
already take the next one (requests stream through the pipeline).
"""

import functools
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from model_zoo import losses, pipeline_stages
from model_zoo.config import TransformerConfig
from model_zoo.errors import ConfigError
from trainers import partitioning
from trainers.serving.profiles import ParallelConfig


def stage_devices(config: ParallelConfig, devices: Sequence[jax.Device]) -> list[list[jax.Device]]:
  """Stage k's devices: the k-th run of `config.tensor` devices of the group."""
  if len(devices) != config.devices:
    raise ConfigError(
        f"a {config} group needs {config.devices} devices ({config.stages} stages x "
        f"{config.tensor} tensor shards); it was given {len(devices)}"
    )
  t = config.tensor
  return [list(devices[k * t : (k + 1) * t]) for k in range(config.stages)]


def _run_stage(module, params, x, target_tokens, weights, *, score: bool):
  out = module.apply({"params": params}, x, target_tokens)
  if not score:
    return out
  return jnp.sum(losses.target_log_probs(out, target_tokens) * weights, axis=-1)


class StagedModel:
  """A DecoderOnlyLM's parameters placed as `config` over `devices`; its scores equal the
  whole model's."""

  def __init__(
      self,
      cfg: TransformerConfig,
      params: Any,
      config: ParallelConfig,
      devices: Sequence[jax.Device],
      logical_axis_rules: Sequence[tuple[str, Any]] = partitioning.DEFAULT_RULES,
  ):
    self.config = config
    self.vocab_size = cfg.vocab_size
    self.modules = modules = pipeline_stages.stages(cfg, config.stages)
    self.partitioners = [
        partitioning.Partitioner(
            (1, 1, config.tensor, 1), devices=d, logical_axis_rules=logical_axis_rules
        )
        for d in stage_devices(config, devices)
    ]
    self.params, self._run = [], []
    last = config.stages - 1
    for k, (module, partitioner) in enumerate(zip(modules, self.partitioners)):
      x = (
          jnp.zeros((1, 1), jnp.int32)
          if k == 0
          else jnp.zeros((1, 1, cfg.emb_dim), cfg.activation_dtype)
      )
      boxed = jax.eval_shape(module.init, jax.random.PRNGKey(0), x, jnp.ones((1, 1), jnp.int32))
      shardings = partitioner.param_shardings(boxed["params"])
      self.params.append(
          jax.device_put(pipeline_stages.stage_params(cfg, params, config.stages, k), shardings)
      )
      self._run.append(
          partitioner.compile(
              functools.partial(_run_stage, module, score=k == last),
              in_shardings=(shardings, None, None, None),
              out_shardings=partitioner.sharding(P()),
          )
      )

  def on_stage(self, k: int, array: jax.Array | np.ndarray) -> jax.Array:
    """`array` copied onto stage k's devices (whole on each)."""
    return jax.device_put(array, NamedSharding(self.partitioners[k].mesh, P()))

  def run_stage(
      self, k: int, x: jax.Array, target_tokens: jax.Array, weights: jax.Array
  ) -> jax.Array:
    """Stage k on its inputs (already on its devices): token ids for the first stage, the
    previous stage's activations otherwise; the last stage gives each row's score, so the
    logits never leave its devices."""
    return self._run[k](self.params[k], x, target_tokens, weights)

  def score(
      self,
      input_tokens: np.ndarray,
      target_tokens: np.ndarray,
      weights: Optional[np.ndarray] = None,
  ) -> jax.Array:
    """Per-row log-likelihood of the targets, as Model.score_batch: sum_t w_t log p(target_t),
    the weights defaulting to the non-padding targets; through every stage in turn."""
    weights = np.asarray((target_tokens > 0) if weights is None else weights, np.float32)
    x = input_tokens
    for k in range(self.config.stages):
      x = self.run_stage(
          k, self.on_stage(k, x), self.on_stage(k, target_tokens), self.on_stage(k, weights)
      )
    return x

  def memory_per_device(self) -> dict[jax.Device, int]:
    """Bytes of parameters each device of the group holds (its shards)."""
    held: dict[jax.Device, int] = {}
    for stage in self.params:
      for leaf in jax.tree.leaves(stage):
        for shard in leaf.addressable_shards:
          held[shard.device] = held.get(shard.device, 0) + shard.data.nbytes
    return held
