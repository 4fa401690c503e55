"""linear.contract's and linear.expert_contract's own backward passes against NumPy float64
einsums of the same derivatives, for one and two contracted axes in either order, and the
remat policies that must still keep their outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import print_saved_residuals

from model_zoo.config import REMAT_POLICIES
from model_zoo.layers import linear

# (x shape, contracted axes of x in kernel order, kernel feature shape, NumPy einsum of x.kernel)
CASES = {
    "embed->mlp": ((2, 5, 6), (2,), (7,), "bti,io->bto"),
    "embed->heads,kv": ((2, 5, 6), (2,), (3, 4), "bti,ihk->bthk"),
    "heads,kv->embed": ((2, 5, 3, 4), (2, 3), (6,), "bthk,hko->bto"),
    "kv,heads->embed (kernel axes swapped)": ((2, 5, 3, 4), (3, 2), (6,), "bthk,kho->bto"),
    "three axes, rotated": ((2, 3, 4, 5), (3, 1, 2), (6,), "bhkd,dhko->bo"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_value_and_gradients_match_numpy(case):
  x_shape, axis, features, spec = CASES[case]
  rng = np.random.default_rng(0)
  x = rng.normal(size=x_shape)
  kernel = rng.normal(size=tuple(x_shape[a] for a in axis) + features)
  y = np.einsum(spec, x, kernel)
  dy = rng.normal(size=y.shape)
  lhs, rhs_out = spec.split(",")
  rhs, out = rhs_out.split("->")
  want_dx = np.einsum(f"{out},{rhs}->{lhs}", dy, kernel)
  want_dkernel = np.einsum(f"{lhs},{out}->{rhs}", x, dy)

  f32 = lambda a: jnp.asarray(a, jnp.float32)
  got_y, vjp = jax.vjp(lambda a, k: linear.contract(a, k, axis), f32(x), f32(kernel))
  got_dx, got_dkernel = vjp(f32(dy))
  np.testing.assert_allclose(np.asarray(got_y), y, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(got_dx), want_dx, rtol=1e-5, atol=1e-5)
  assert got_dkernel.shape == kernel.shape
  np.testing.assert_allclose(np.asarray(got_dkernel), want_dkernel, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "x_shape,spec", [((3, 5, 4), "end,edf->enf"), ((3, 2, 5, 4), "egcd,edf->egcf")]
)
def test_expert_contract_matches_numpy(x_shape, spec):
  rng = np.random.default_rng(1)
  x, kernel = rng.normal(size=x_shape), rng.normal(size=(x_shape[0], x_shape[-1], 6))
  y = np.einsum(spec, x, kernel)
  dy = rng.normal(size=y.shape)
  lhs, rhs_out = spec.split(",")
  rhs, out = rhs_out.split("->")
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  got_y, vjp = jax.vjp(linear.expert_contract, f32(x), f32(kernel))
  got_dx, got_dkernel = vjp(f32(dy))
  np.testing.assert_allclose(np.asarray(got_y), y, rtol=1e-5, atol=1e-5)
  want_dx = np.einsum(f"{out},{rhs}->{lhs}", dy, kernel)
  np.testing.assert_allclose(np.asarray(got_dx), want_dx, rtol=1e-5, atol=1e-5)
  want_dkernel = np.einsum(f"{lhs},{out}->{rhs}", x, dy)
  np.testing.assert_allclose(np.asarray(got_dkernel), want_dkernel, rtol=1e-5, atol=1e-5)


def test_kernel_gradient_keeps_the_kernel_dtype():
  x = jnp.ones((2, 3, 4), jnp.bfloat16)
  kernel = jnp.ones((4, 5), jnp.bfloat16)
  dkernel = jax.grad(lambda k: jnp.sum(linear.contract(x, k, (2,)).astype(jnp.float32)))(kernel)
  assert dkernel.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(dkernel, np.float32), 6.0)  # 2 * 3 rows of ones


@pytest.mark.parametrize("policy,kept", [("dots", True), ("dots_no_batch", True), ("full", False)])
def test_remat_policies_see_the_weight_matmul(policy, kept, capsys):
  """The matmul is hidden in a custom VJP; its output is still kept by the matmul policies."""
  dense = linear.DenseGeneral(16, ("embed", "mlp"))
  x = jnp.ones((2, 8, 4))
  params = dense.init(jax.random.PRNGKey(0), x)
  f = lambda p, a: jnp.sum(jnp.sin(dense.apply(p, a)))
  print_saved_residuals(jax.checkpoint(f, policy=REMAT_POLICIES[policy]), params, x)
  assert ("f32[2,8,16]" in capsys.readouterr().out) == kept
  kernel = jnp.ones((3, 4, 16))
  g = lambda k, a: jnp.sum(jnp.sin(linear.expert_contract(a, k)))
  print_saved_residuals(
      jax.checkpoint(g, policy=REMAT_POLICIES[policy]), kernel, x[:, :3].swapaxes(0, 1)
  )
  assert ("f32[3,2,16]" in capsys.readouterr().out) == kept
