"""Training state: step, params (fp32), optimizer state, and the rng of the run."""

from typing import Any

import flax
import jax
import optax


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @classmethod
  def create(cls, params: Any, tx: optax.GradientTransformation, rng: jax.Array) -> "TrainState":
    return cls(
        step=jax.numpy.zeros((), jax.numpy.int32),
        params=params,
        opt_state=tx.init(params),
        rng=rng,
        tx=tx,
    )

  def apply_gradients(self, grads: Any) -> "TrainState":
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(
        step=self.step + 1, params=optax.apply_updates(self.params, updates), opt_state=opt_state
    )
