"""Compute-optimal scaling fits (Chinchilla's approach 2, IsoFLOP profiles; PaLM 2 section 2).

Pure NumPy, so the sizing calculator and the tests need no JAX or TensorFlow.

Training compute is C = 6 N D FLOPs (N parameters, D tokens: a multiply-add per parameter
per token forwards, twice that backwards). At one budget C, models of several sizes N each
trained on D = C / (6 N) tokens trace an IsoFLOP curve of final loss against N; a parabola
in ln N through it has its vertex at the loss-optimal N_opt(C) (`fit_isoflop`). Across
budgets, N_opt = a C^alpha and D_opt = b C^beta are straight lines in log-log space
(`fit_scaling_law`). Since D_opt = C / (6 N_opt), alpha + beta = 1 and b = 1 / (6 a)
exactly: the two fits carry one law, reported both ways as Chinchilla and PaLM 2 do (both
find alpha ~ beta ~ 0.5). `CHINCHILLA` is their rule of thumb as such a law: N and D both
grow as C^0.5, with D = 20 N (Hoffmann et al. 2022; PaLM 2's own fits agree).
"""

import dataclasses
import math
from typing import Sequence

import numpy as np

from model_zoo.errors import ConfigError

FLOPS_PER_PARAM_TOKEN = 6.0
CHINCHILLA_TOKENS_PER_PARAM = 20.0


def flops(n_params: float, n_tokens: float) -> float:
  """Training FLOPs C = 6 N D."""
  return FLOPS_PER_PARAM_TOKEN * n_params * n_tokens


def tokens_for(budget: float, n_params: float) -> float:
  """The tokens D = C / (6 N) that spend `budget` FLOPs on a model of `n_params`."""
  return budget / (FLOPS_PER_PARAM_TOKEN * n_params)


def _positive(name: str, values: Sequence[float]) -> np.ndarray:
  array = np.asarray(values, np.float64)
  if array.ndim != 1 or not np.all(np.isfinite(array)) or np.any(array <= 0):
    raise ConfigError(f"{name} must be a list of positive finite numbers; got {list(values)}.")
  return array


@dataclasses.dataclass(frozen=True)
class IsoFlopFit:
  """The least-squares parabola loss = c2 u^2 + c1 u + c0, u = ln N - center, through one
  budget's runs, and its minimum.

  `bracketed` is False when the parabola has no minimum inside the sampled sizes (it opens
  downward, or its vertex lies outside them): the optimum is then not located, and n_opt
  and loss_opt are those of the best sampled run, not an extrapolation; sample smaller or
  larger sizes.
  """

  coefficients: tuple[float, float, float]  # (c2, c1, c0)
  center: float  # the mean ln N of the runs (conditions the fit)
  n_opt: float
  loss_opt: float
  bracketed: bool

  def loss_at(self, n_params: np.ndarray) -> np.ndarray:
    """The parabola at `n_params`."""
    return np.polyval(self.coefficients, np.log(n_params) - self.center)


def fit_isoflop(n_params: Sequence[float], losses: Sequence[float]) -> IsoFlopFit:
  """The parabola in ln N of `losses` (one budget's final losses) and its vertex."""
  n = _positive("the model sizes", n_params)
  loss = np.asarray(losses, np.float64)
  if loss.shape != n.shape or not np.all(np.isfinite(loss)):
    raise ConfigError(
        f"need one finite loss per model size; got {len(loss)} losses {list(losses)} for "
        f"{len(n)} sizes."
    )
  if len(np.unique(n)) < 3:
    raise ConfigError(
        f"a parabola needs at least 3 distinct model sizes per budget; got {sorted(set(n))}: "
        "add sizes."
    )
  u = np.log(n)
  center = float(np.mean(u))
  c2, c1, c0 = np.polyfit(u - center, loss, 2)
  vertex = -c1 / (2.0 * c2) if c2 > 0 else math.nan
  bracketed = bool(c2 > 0 and u.min() - center < vertex < u.max() - center)
  if bracketed:
    n_opt, loss_opt = math.exp(center + vertex), float(np.polyval((c2, c1, c0), vertex))
  else:
    best = int(np.argmin(loss))
    n_opt, loss_opt = float(n[best]), float(loss[best])
  return IsoFlopFit((float(c2), float(c1), float(c0)), center, n_opt, loss_opt, bracketed)


@dataclasses.dataclass(frozen=True)
class PowerLaw:
  """y = coefficient * C^exponent, fitted by least squares in log-log; r_squared there."""

  coefficient: float
  exponent: float
  r_squared: float

  def __call__(self, budget: float) -> float:
    return self.coefficient * budget**self.exponent


def fit_power_law(budgets: Sequence[float], values: Sequence[float]) -> PowerLaw:
  """The line ln y = ln coefficient + exponent ln C through (budgets, values)."""
  x, y = np.log(_positive("the budgets", budgets)), np.log(_positive("the values", values))
  if x.shape != y.shape:
    raise ConfigError(f"need one value per budget; got {len(y)} for {len(x)} budgets.")
  if len(np.unique(x)) < 2:
    raise ConfigError(
        f"a power law needs at least 2 distinct budgets; got {list(budgets)}: add budgets."
    )
  exponent, intercept = np.polyfit(x, y, 1)
  residual = y - (intercept + exponent * x)
  total = np.sum((y - y.mean()) ** 2)
  r_squared = 1.0 - float(np.sum(residual**2) / total) if total > 0 else 1.0
  return PowerLaw(math.exp(intercept), float(exponent), r_squared)


@dataclasses.dataclass(frozen=True)
class ScalingLaw:
  """N_opt = a C^alpha (`params`) and D_opt = b C^beta (`tokens`); alpha + beta = 1."""

  params: PowerLaw
  tokens: PowerLaw


def fit_scaling_law(budgets: Sequence[float], n_opts: Sequence[float]) -> ScalingLaw:
  """Both power laws from each budget's optimal size (D_opt = C / (6 N_opt))."""
  c, n = _positive("the budgets", budgets), _positive("the optimal sizes", n_opts)
  if c.shape != n.shape:
    raise ConfigError(f"need one optimal size per budget; got {len(n)} for {len(c)} budgets.")
  return ScalingLaw(fit_power_law(c, n), fit_power_law(c, tokens_for(c, n)))


def _chinchilla() -> ScalingLaw:
  """C = 6 N (20 N) gives N = (C / 120)^0.5 and D = 20 N; a rule, so no r_squared (NaN)."""
  a = (FLOPS_PER_PARAM_TOKEN * CHINCHILLA_TOKENS_PER_PARAM) ** -0.5
  return ScalingLaw(
      PowerLaw(a, 0.5, math.nan), PowerLaw(CHINCHILLA_TOKENS_PER_PARAM * a, 0.5, math.nan)
  )


CHINCHILLA = _chinchilla()
