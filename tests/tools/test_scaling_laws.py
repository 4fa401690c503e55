"""tools/scaling_laws: the IsoFLOP parabola and the power laws recover a known optimum.

The synthetic loss is Chinchilla's parametric fit L(N, D) = E + A / N^a + B / D^b (Hoffmann
et al. 2022, approach 3's constants). At a budget C, D = C / (6 N), and setting dL/dN = 0
gives N_opt = G (C / 6)^(b / (a + b)) with G = (a A / (b B))^(1 / (a + b)): the exponents
alpha = b / (a + b) and beta = a / (a + b) are known in closed form.
"""

import math

import numpy as np
import pytest

from model_zoo.errors import ConfigError, UserError
from tools import scaling_laws

E, A, B, ALPHA_N, BETA_D = 1.69, 406.4, 410.7, 0.34, 0.28  # a and b of the docstring
BUDGETS = (1e18, 1e19, 1e20, 1e21, 1e22)


def _loss(n, budget):
  return E + A / n**ALPHA_N + B / scaling_laws.tokens_for(budget, n) ** BETA_D


def _n_opt(budget):
  g = (ALPHA_N * A / (BETA_D * B)) ** (1.0 / (ALPHA_N + BETA_D))
  return g * (budget / 6.0) ** (BETA_D / (ALPHA_N + BETA_D))


def _isoflop_optima():
  """Each budget's fitted optimum from 7 sizes, 16x apart end to end, around a guess that
  misses the true optimum by a different factor at each budget (as a real grid would)."""
  optima = []
  for i, budget in enumerate(BUDGETS):
    guess = _n_opt(budget) * (0.6, 1.5, 0.8, 1.2, 1.0)[i]
    sizes = guess * np.geomspace(0.25, 4.0, 7)
    fit = scaling_laws.fit_isoflop(sizes, _loss(sizes, budget))
    assert fit.bracketed
    optima.append(fit.n_opt)
  return optima


def test_flops_and_tokens_are_inverse():
  assert scaling_laws.flops(1e9, 2e10) == 1.2e20
  assert scaling_laws.tokens_for(1.2e20, 1e9) == pytest.approx(2e10)


def test_fitted_exponents_are_the_closed_form_ones_within_one_percent():
  law = scaling_laws.fit_scaling_law(BUDGETS, _isoflop_optima())
  alpha, beta = BETA_D / (ALPHA_N + BETA_D), ALPHA_N / (ALPHA_N + BETA_D)  # 0.452, 0.548
  assert law.params.exponent == pytest.approx(alpha, rel=0.01)
  assert law.tokens.exponent == pytest.approx(beta, rel=0.01)
  assert law.params.exponent + law.tokens.exponent == pytest.approx(1.0, abs=1e-9)
  assert law.tokens.coefficient == pytest.approx(1.0 / (6.0 * law.params.coefficient))
  assert law.params.r_squared > 0.999 and law.tokens.r_squared > 0.999
  for budget in BUDGETS:
    assert law.params(budget) == pytest.approx(_n_opt(budget), rel=0.1)


def test_an_exact_parabola_gives_its_vertex_exactly():
  sizes = np.array([1e5, 2e5, 4e5, 8e5, 1.6e6])
  vertex = 3e5
  losses = 3.0 + 0.2 * (np.log(sizes) - math.log(vertex)) ** 2
  fit = scaling_laws.fit_isoflop(sizes, losses)
  assert fit.bracketed
  assert fit.n_opt == pytest.approx(vertex, rel=1e-9)
  assert fit.loss_opt == pytest.approx(3.0, abs=1e-9)
  assert fit.loss_at(np.array([vertex * math.e])) == pytest.approx([3.2])


def test_an_exact_power_law_is_recovered():
  law = scaling_laws.fit_power_law([1e10, 1e12, 1e14], [2.0 * c**0.5 for c in (1e10, 1e12, 1e14)])
  assert law.coefficient == pytest.approx(2.0) and law.exponent == pytest.approx(0.5)
  assert law.r_squared == pytest.approx(1.0)


@pytest.mark.parametrize(
    "sizes",
    [
        np.geomspace(1e3, 1e4, 5),  # all far below the optimum: loss still falling at the end
        np.geomspace(1e8, 1e9, 5),  # all far above it
    ],
)
def test_sizes_all_on_one_side_are_flagged_and_not_extrapolated(sizes):
  budget = 1e18
  assert not (sizes.min() < _n_opt(budget) < sizes.max())
  losses = _loss(sizes, budget)
  fit = scaling_laws.fit_isoflop(sizes, losses)
  assert not fit.bracketed
  assert fit.n_opt == sizes[np.argmin(losses)] and fit.loss_opt == losses.min()


def test_a_parabola_opening_downward_is_not_bracketed():
  fit = scaling_laws.fit_isoflop([1e5, 2e5, 4e5], [3.0, 3.5, 3.0])
  assert not fit.bracketed and fit.n_opt in (1e5, 4e5)


@pytest.mark.parametrize(
    "sizes, losses, match",
    [
        ([1e5, 2e5], [3.0, 2.9], "at least 3 distinct model sizes per budget.*add sizes"),
        ([1e5, 1e5, 2e5], [3.0, 3.0, 2.9], "at least 3 distinct model sizes"),
        ([1e5, -2e5, 4e5], [3.0, 2.9, 3.1], "model sizes must be .* positive finite"),
        ([1e5, 2e5, math.nan], [3.0, 2.9, 3.1], "model sizes must be .* positive finite"),
        ([1e5, 2e5, 4e5], [3.0, 2.9], "one finite loss per model size"),
        ([1e5, 2e5, 4e5], [3.0, math.inf, 2.9], "one finite loss per model size"),
    ],
)
def test_bad_isoflop_input_names_the_fix(sizes, losses, match):
  with pytest.raises(ConfigError, match=match):
    scaling_laws.fit_isoflop(sizes, losses)


def test_bad_power_law_input_names_the_fix():
  with pytest.raises(UserError, match="at least 2 distinct budgets.*add budgets"):
    scaling_laws.fit_scaling_law([1e12, 1e12], [1e5, 2e5])
  with pytest.raises(ConfigError, match="budgets must be .* positive"):
    scaling_laws.fit_scaling_law([0.0, 1e12], [1e5, 2e5])
  with pytest.raises(ConfigError, match="one optimal size per budget"):
    scaling_laws.fit_scaling_law([1e11, 1e12], [1e5])
