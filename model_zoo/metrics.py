"""Metrics as (total, count) pairs, so microbatches, steps and hosts can be summed exactly."""

from typing import Mapping

import flax
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Average:
  """A running mean: add totals and counts, divide only when reporting."""

  total: jax.Array
  count: jax.Array

  @classmethod
  def of(cls, total, count=1.0) -> "Average":
    return cls(jnp.asarray(total, jnp.float32), jnp.asarray(count, jnp.float32))

  def merge(self, other: "Average") -> "Average":
    return Average(self.total + other.total, self.count + other.count)

  def value(self) -> jax.Array:
    return self.total / jnp.maximum(self.count, 1e-12)


Metrics = Mapping[str, Average]


def merge(a: Metrics, b: Metrics) -> dict[str, Average]:
  return {k: a[k].merge(b[k]) if k in a else b[k] for k in {**a, **b}} if a else dict(b)


def values(metrics: Metrics) -> dict[str, float]:
  """Host-side floats of each metric's mean."""
  return {k: float(v.value()) for k, v in jax.device_get(dict(metrics)).items()}


def is_average(x) -> bool:
  return isinstance(x, Average)
