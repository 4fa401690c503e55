"""MoeBlock: E gated-FFN experts behind a router, in place of a transformer layer's MLP.

Each sequence is cut into groups of `group_size` tokens (the whole sequence if it is
shorter), routed within their group (model_zoo/moe/routers.py). Two dispatch paths compute
the same function where nothing is dropped:

- "einsum" (GShard): one-hot dispatch and combine tensors [groups, tokens, experts, capacity]
  carry the tokens to [experts, groups, capacity, embed] and back; capacity-bounded, a choice
  that finds its expert full is dropped and its token passes through the residual. Dense
  matmuls only. The dispatch runs where each group is; the move to the expert-sharded layout
  (the mesh's `expert` axis) is one all-to-all, and the combine mirrors it.
- "dropless" (MegaBlocks / MaxText): every top-k choice is kept; the (token, choice) pairs
  are sorted by expert and run through `jax.lax.ragged_dot`, one contiguous block per expert.
  On an expert-sharded mesh it is correct but not expert-parallel (one global sort).

The load-balancing and router z-losses are sown as aux losses with their weights, the
dropped fraction, router entropy and expert load as metrics (model_zoo/aux_outputs.py).
Router randomness (jitter, the "random" second expert) draws from the "router" rng stream and
is off when `deterministic` (eval, decoding)."""

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from model_zoo import aux_outputs
from model_zoo.errors import ConfigError
from model_zoo.layers import linear, mlp, types
from model_zoo.moe import routers
from model_zoo.moe.config import MoeConfig

ROUTER_RNG = "router"
MODULE_NAME = "moe"  # a transformer layer's MoeBlock; trainers spot MoE parameters by it
# Named scopes of the block's four pieces (in the compiled ops' op_name, forward and
# backward): profiles and tools/benchmark_moe.py split the block's time by them.
ROUTER_SCOPE, DISPATCH_SCOPE, EXPERTS_SCOPE, COMBINE_SCOPE = SCOPES = (
    "moe_router",
    "moe_dispatch",
    "moe_experts",
    "moe_combine",
)
_TOKEN_AXES = ("activation_batch", "activation_length", "activation_embed")
# [groups, experts, capacity, embed] where each group's device holds it, and [experts, groups,
# capacity, features] with the experts over the mesh's expert axis.
_GROUPED_AXES = ("activation_batch", None, None, "activation_embed")
_DISPATCHED_AXES = ("activation_expert", "activation_batch_no_expert", None, "activation_embed")
_DISPATCHED_HIDDEN_AXES = _DISPATCHED_AXES[:3] + ("activation_mlp",)


class MoeBlock(nn.Module):
  """out = sum over a token's experts e of combine weight * FFN_e(x) (see the module docstring)."""

  config: MoeConfig
  hidden_dim: int  # each expert's FFN width
  activations: Sequence[str] = ("silu", "linear")
  dropout_rate: float = 0.0  # on each expert's hidden activations, as in MlpBlock
  dtype: types.DType = jnp.float32
  param_dtype: types.DType = jnp.float32

  def _groups(self, x: types.Array) -> types.Array:
    """x [batch, length, embed] as [groups, group_size, embed], groups within a sequence.

    A group never spans two sequences, so a sequence's routing never depends on the others
    in its batch (decoding one token routes it alone) and the groups shard like the batch.
    """
    length = x.shape[1]
    size = min(self.config.group_size, length)
    if length % size:
      raise ConfigError(
          f"MoeConfig.group_size={self.config.group_size} does not divide the sequence length "
          f"{length}; tokens are routed in groups within a sequence, so pick a group size that "
          "divides the length (or one >= it: the whole sequence is one group)."
      )
    groups = x.reshape(-1, size, x.shape[-1])
    return nn.with_logical_constraint(groups, _TOKEN_AXES)

  def _expert_kernel(self, name: str, shape: tuple[int, ...], axes: tuple[str, ...]):
    init = nn.initializers.variance_scaling(
        1.0, "fan_in", "truncated_normal", in_axis=1, out_axis=2, batch_axis=(0,)
    )
    kernel = self.param(name, nn.with_logical_partitioning(init, axes), shape, self.param_dtype)
    return kernel.astype(self.dtype)

  def _kernels(self, embed: int):
    e, f = self.config.num_experts, self.hidden_dim
    wi = [
        self._expert_kernel(f"wi_{i}", (e, embed, f), ("expert", "embed", "mlp"))
        for i in range(len(self.activations))
    ]
    return wi, self._expert_kernel("wo", (e, f, embed), ("expert", "mlp", "embed"))

  def _route(self, x: types.Array, deterministic: bool) -> tuple[types.Array, routers.Routing]:
    router_in = x.astype(jnp.float32)
    if self.config.jitter and not deterministic:
      noise = jax.random.uniform(
          self.make_rng(ROUTER_RNG),
          router_in.shape,
          minval=1 - self.config.jitter,
          maxval=1 + self.config.jitter,
      )
      router_in = router_in * noise
    logits = linear.DenseGeneral(
        self.config.num_experts,
        ("embed", None),
        dtype=jnp.float32,
        param_dtype=self.param_dtype,
        name="router",
    )(router_in)
    factor = (
        self.config.eval_capacity_factor if deterministic else self.config.train_capacity_factor
    )
    group_size = x.shape[1]
    if self.config.router == "expert_choice":
      capacity = routers.expert_choice_capacity(group_size, factor, self.config.num_experts)
      return logits, routers.expert_choice_routing(logits, capacity)
    capacity = routers.capacity(group_size, factor, self.config.top_k, self.config.num_experts)
    coin = None
    if self.config.second_expert_policy == "random" and not deterministic:
      coin = self.make_rng(ROUTER_RNG)
    routing = routers.top_k_routing(
        logits, self.config.top_k, capacity, self.config.second_expert_policy, coin
    )
    return logits, routing

  @nn.compact
  def __call__(self, x: types.Array, deterministic: bool = True) -> types.Array:
    groups = self._groups(x)
    with jax.named_scope(ROUTER_SCOPE):
      logits, routing = self._route(groups, deterministic)
      self._report(logits, routing)
    wi, wo = self._kernels(x.shape[-1])
    if self.config.dispatch == "einsum":
      out = self._einsum_experts(groups.astype(self.dtype), routing, wi, wo, deterministic)
    else:
      out = self._dropless_experts(groups.astype(self.dtype), routing, wi, wo, deterministic)
    return out.reshape(x.shape).astype(x.dtype)

  def _ffn(
      self, x, wi, wo, matmul_in: Callable, matmul_out: Callable, deterministic: bool
  ) -> types.Array:
    """The gated FFN of every expert at once; the matmuls say how tokens meet their expert."""
    with jax.named_scope(EXPERTS_SCOPE):
      hidden = None
      for kernel, name in zip(wi, self.activations):
        h = mlp.activation(name)(matmul_in(x, kernel))
        hidden = h if hidden is None else hidden * h
      hidden = nn.Dropout(self.dropout_rate)(hidden, deterministic=deterministic)
      return matmul_out(hidden, wo)

  def _einsum_experts(
      self, groups, routing: routers.Routing, wi, wo, deterministic: bool
  ) -> types.Array:
    # Dispatch and combine stay local to each group's device; the two transposes between the
    # group-sharded and the expert-sharded layouts are the tokens' all-to-alls.
    with jax.named_scope(DISPATCH_SCOPE):
      dispatch = routing.dispatch.astype(self.dtype)
      local_in = nn.with_logical_constraint(
          jnp.einsum("gsec,gsd->gecd", dispatch, groups), _GROUPED_AXES
      )
      expert_in = nn.with_logical_constraint(jnp.swapaxes(local_in, 0, 1), _DISPATCHED_AXES)

    def matmul_in(h, kernel):
      return nn.with_logical_constraint(linear.expert_contract(h, kernel), _DISPATCHED_HIDDEN_AXES)

    def matmul_out(h, kernel):
      return nn.with_logical_constraint(linear.expert_contract(h, kernel), _DISPATCHED_AXES)

    expert_out = self._ffn(expert_in, wi, wo, matmul_in, matmul_out, deterministic)
    with jax.named_scope(COMBINE_SCOPE):
      local_out = nn.with_logical_constraint(jnp.swapaxes(expert_out, 0, 1), _GROUPED_AXES)
      out = jnp.einsum("gsec,gecd->gsd", routing.combine.astype(self.dtype), local_out)
      return nn.with_logical_constraint(out, _TOKEN_AXES)

  def _dropless_experts(
      self, groups, routing: routers.Routing, wi, wo, deterministic: bool
  ) -> types.Array:
    tokens = groups.reshape(-1, groups.shape[-1])
    k = self.config.top_k
    with jax.named_scope(DISPATCH_SCOPE):
      expert = routing.expert_index.reshape(-1)  # token-major: token t's choices at t*k..+k-1
      order = jnp.argsort(expert, stable=True)
      sizes = jnp.bincount(expert, length=self.config.num_experts).astype(jnp.int32)
      sorted_in = jnp.repeat(tokens, k, axis=0)[order]
    ragged = lambda h, kernel: jax.lax.ragged_dot(h, kernel, sizes)
    sorted_out = self._ffn(sorted_in, wi, wo, ragged, ragged, deterministic)
    with jax.named_scope(COMBINE_SCOPE):
      out = sorted_out[jnp.argsort(order)].reshape(tokens.shape[0], k, -1)
      weights = routing.expert_weight.reshape(-1, k, 1).astype(self.dtype)
      return jnp.sum(out * weights, axis=1).reshape(groups.shape)

  def _report(self, logits: types.Array, routing: routers.Routing) -> None:
    """Aux losses (weighted, into the loss) and metrics (never in the loss)."""
    aux_outputs.sow_aux_loss(
        self, "balance_loss", routers.load_balancing_loss(routing), self.config.balance_loss_weight
    )
    aux_outputs.sow_aux_loss(
        self, "router_z_loss", routers.router_z_loss(logits), self.config.z_loss_weight
    )
    gates = jax.lax.stop_gradient(routing.gates)
    entropy = -jnp.sum(gates * jnp.log(jnp.maximum(gates, 1e-30)), axis=-1)
    aux_outputs.sow_metric(self, "router_entropy", jnp.mean(entropy))
    if self.config.router != "top_k":
      return  # expert choice: every expert takes exactly its capacity, nothing to report
    # Before capacity: each expert's share of the group's routed choices (1/E when balanced).
    routed = jax.lax.stop_gradient(routing.expert_weight) > 0  # the "random" policy skips some
    per_expert = jnp.einsum(
        "gsk,gske->ge",
        routed.astype(jnp.float32),
        jax.nn.one_hot(routing.expert_index, gates.shape[-1]),
    )
    load = per_expert / jnp.sum(per_expert, axis=-1, keepdims=True)  # [groups, experts]
    aux_outputs.sow_metric(self, "max_expert_load", jnp.mean(jnp.max(load, axis=-1)))
    if self.config.report_expert_load:
      aux_outputs.sow_metric_items(self, "expert_load", jnp.mean(load, axis=0))
    if self.config.dispatch == "einsum":  # the dropless path drops nothing
      placed = jnp.sum(jax.lax.stop_gradient(routing.dispatch), axis=(1, 2, 3))
      wanted = jnp.sum(per_expert, axis=-1)
      aux_outputs.sow_metric(self, "dropped_fraction", jnp.mean(1.0 - placed / wanted))
