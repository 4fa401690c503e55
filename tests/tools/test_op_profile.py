"""tools/op_profile: each compiled op's profiled time goes to the named scope it ran under."""

import jax
import jax.numpy as jnp

from tools import op_profile


def _program(x, w):
  with jax.named_scope("heavy"):
    for _ in range(4):
      x = jnp.tanh(x @ w)
  with jax.named_scope("light"):
    x = jnp.sin(x)
  return jnp.sum(x)


def test_heavy_scope_gets_the_matmuls_time_forward_and_backward():
  step = jax.jit(jax.grad(_program))
  x, w = jnp.ones((256, 256)) * 0.01, jnp.ones((256, 256)) * 0.01
  step(x, w).block_until_ready()
  hlo = step.lower(x, w).compile().as_text()
  owners = op_profile._scope_of_instruction(hlo, ("heavy", "light"))
  # Every instruction from a dot, forward or transposed, belongs to "heavy".
  dots = [name for name, line in _op_names(hlo).items() if "dot_general" in line]
  assert dots and all(owners[name] == "heavy" for name in dots)

  def run():
    for _ in range(3):
      step(x, w).block_until_ready()

  seconds = op_profile.op_seconds_by_scope(run, hlo, ("heavy", "light"))
  assert set(seconds) == {"heavy", "light", op_profile.REST}
  assert seconds["heavy"] > 5 * seconds["light"]
  assert seconds["heavy"] > 0.5 * sum(seconds.values())


def _op_names(hlo: str) -> dict[str, str]:
  names = {}
  for line in hlo.splitlines():
    match = op_profile._INSTRUCTION.match(line)
    if match:
      names[match.group(1)] = match.group(2)
  return names
