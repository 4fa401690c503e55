"""Learning-rate schedules against their formulas; both optimizers make progress."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from trainers import optimizers


def test_rsqrt_schedule_is_linear_warmup_then_inverse_sqrt():
  schedule = optimizers.linear_warmup_rsqrt_decay(learning_rate=0.01, warmup_steps=100)
  for step in [0, 49, 99, 100, 399, 9999]:
    n = step + 1
    want = 0.01 * min(n / 100, math.sqrt(100 / max(n, 100)))
    assert float(schedule(step)) == pytest.approx(want, rel=1e-6)


def test_warmup_cosine_reaches_peak_then_end_fraction():
  schedule = optimizers.warmup_cosine_decay(
      learning_rate=1.0, warmup_steps=10, decay_steps=110, end_fraction=0.1
  )
  assert float(schedule(0)) == 0.0
  assert float(schedule(10)) == pytest.approx(1.0)
  assert float(schedule(60)) == pytest.approx(
      0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)), rel=1e-5
  )
  assert float(schedule(110)) == pytest.approx(0.1, rel=1e-5)


def test_linear_warmup_constant():
  schedule = optimizers.linear_warmup_constant(learning_rate=2.0, warmup_steps=4)
  assert [float(schedule(s)) for s in [0, 2, 4, 100]] == pytest.approx([0.0, 1.0, 2.0, 2.0])


@pytest.mark.parametrize(
    "make",
    [
        lambda s: optimizers.adamw(s),
        lambda s: optimizers.adafactor(s),
        lambda s: optimizers.with_gradient_clipping(optimizers.adamw(s), max_norm=0.5),
    ],
)
def test_optimizers_minimise_a_quadratic(make):
  tx = make(optimizers.constant_schedule(0.05))
  params = {"w": jnp.full((4, 3), 2.0)}
  state = tx.init(params)
  loss = lambda p: jnp.sum(p["w"] ** 2)
  start = float(loss(params))
  for _ in range(50):
    grads = jax.grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
  assert float(loss(params)) < 0.5 * start


def test_clipping_bounds_the_global_gradient_norm():
  tx = optimizers.with_gradient_clipping(optax.sgd(1.0), max_norm=0.5)
  grads = {"a": jnp.full((3,), 10.0), "b": jnp.full((2, 2), -5.0)}
  updates, _ = tx.update(grads, tx.init(grads))
  assert float(optax.tree.norm(updates)) == pytest.approx(0.5, rel=1e-5)
  small = {"a": jnp.full((3,), 0.01), "b": jnp.zeros((2, 2))}
  updates, _ = tx.update(small, tx.init(small))
  np.testing.assert_allclose(updates["a"], -0.01, rtol=1e-6)  # below the bound: untouched
