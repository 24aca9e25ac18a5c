"""Scaling laws from a sweep's runs: loss against compute on the compute-efficient frontier, and the compute-optimal
model size N and training tokens D by Chinchilla's three approaches (Hoffmann et al. 2022, arXiv:2203.15556).

- `fit_loss_frontier`: L(C) = a C^-b on the frontier (the lower envelope of the runs' curves or final points).
- Approach 1, `fit_envelope`: at each compute, the run whose training curve is lowest there; N*(C) and D*(C) are
  power laws fitted to the runs on that envelope.
- Approach 2, `fit_isoflop`: each run's curve read at fixed budgets; per budget, a parabola of loss against log N
  whose vertex is N*(C); power laws through the vertices.
- Approach 3, `fit_loss_law`: L(N, D) = E + A / N^alpha + B / D^beta, fitted as Hoffmann et al. and Besiroglu et
  al. 2024 (arXiv:2404.10102) do; its compute-optimal allocation follows in closed form.
- `held_out_error`: Approach 3 fitted without the largest runs and scored on them.

One concept, the fits, past ~450 lines: the approaches share the Run type, the bootstrap and the Allocation
they report, and a notebook imports one module. Approach 3 (with its start grid and objective) is the part to
move out first if it grows.

Every interval is a percentile bootstrap over runs: the runs are resampled with replacement and the whole fit is
redone. The fits keep those samples, so a derived prediction (N*, D* and D/N at a budget, a predicted loss) gets its
interval the same way. Compute is C = 6 N D unless the caller's FLOP accounting says otherwise. Pure numpy and scipy;
deterministic given `seed`.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import glob
import itertools
import os
from typing import Callable, Sequence

import numpy as np
import scipy  # scipy.optimize (0.23 s to import) only in the fits: `lm.main` imports this module for every run.

from lm import errors

HUBER_DELTA = 1e-3  # Hoffmann et al.'s: log residuals of real runs (~1e-2) fall in the linear part, robust to outliers.
FLOPS_PER_PARAM_TOKEN = 6.0  # C = 6 N D: 2 FLOPs per parameter and token forward, 4 backward (Kaplan et al. 2020).
LAW_NAMES = ('E', 'A', 'B', 'alpha', 'beta')
POWER_NAMES = ('coefficient', 'exponent', 'offset')
# The summed Huber loss is ~1e-3 at the optimum (delta times residuals of ~1e-2), while L-BFGS-B's default ftol is
# relative to max(|f|, 1): it stops ~1% short in alpha, the early stop Besiroglu et al. found in the original fit.
# These run it to the optimum (noise-free data are recovered to 1e-4, tests/test_scaling.py).
_LBFGS_OPTIONS = {'ftol': 1e-12, 'gtol': 1e-9, 'maxiter': 1000}


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
  """One training run: N non-embedding parameters, D training tokens, C training FLOPs and the final validation
  loss; for Approaches 1 and 2 (and frontiers from curves) also its validation curve: the tokens and FLOPs seen at
  each evaluation, increasing, and the loss there."""
  params: float
  tokens: float
  flops: float
  loss: float
  curve_tokens: np.ndarray = ()
  curve_flops: np.ndarray = ()
  curve_loss: np.ndarray = ()

  def __post_init__(self):
    for name in ('params', 'tokens', 'flops', 'loss'):
      object.__setattr__(self, name, float(_positive(getattr(self, name), f'Run.{name}')[0]))
    curve = {name: np.asarray(getattr(self, name), float).ravel() for name in ('curve_tokens', 'curve_flops',
                                                                                 'curve_loss')}
    if len({len(values) for values in curve.values()}) > 1:
      raise errors.InputError('a Run\'s curve_tokens, curve_flops and curve_loss must have one length, got '
                              f'{[len(values) for values in curve.values()]}')
    for name, values in curve.items():
      step_zero = '' if name == 'curve_loss' else ' (a step-0 evaluation has seen none and has no log: drop it)'
      object.__setattr__(self, name, _positive(values, f'Run.{name}{step_zero}'))
    if np.any(np.diff(curve['curve_flops']) <= 0):
      raise errors.InputError(f'Run.curve_flops must increase, got {curve["curve_flops"]}')


def _positive(values, name: str) -> np.ndarray:
  """`values` as a flat float array, checked positive and finite (the fits take their logs)."""
  values = np.asarray(values, float).ravel()
  if not np.all(np.isfinite(values) & (values > 0)):
    raise errors.InputError(f'{name} must be positive and finite, got {values}')
  return values


def _check_level(level: float) -> None:
  if not 0 < level < 1:
    raise errors.InputError(f'level is a confidence level in (0, 1), got {level}')


def training_flops_per_token(params):
  """6 N: the FLOPs per training token of C = 6 N D, Approach 2's default accounting."""
  return FLOPS_PER_PARAM_TOKEN * np.asarray(params, float)


# Bootstrap.


def _bootstrap(num_runs: int, estimate: Callable, num_samples: int, width: int, seed: int) -> tuple[np.ndarray, int]:
  """(rows [S, width] of `estimate(indices)` over `num_samples` resamples of the runs with replacement, how many
  resamples it could not fit: it returned None)."""
  rng = np.random.default_rng(seed)
  rows = [estimate(rng.integers(0, num_runs, num_runs)) for _ in range(num_samples)]
  kept = [row for row in rows if row is not None and np.all(np.isfinite(row))]
  return np.array(kept, float).reshape(len(kept), width), num_samples - len(kept)


def _interval(values: np.ndarray, level: float) -> tuple:
  """The central `level` of bootstrap `values` along axis 0 as (lo, hi); NaN without samples.

  Percentile intervals, not basic (2 * estimate - quantiles): on tests/test_scaling.py's synthetic law the percentile
  ones covered the truth in 94-98% of 50 repetitions per parameter of Approach 3, the basic ones in 88-92%. They are
  also the same whether a parameter is fitted as log A or reported as A.
  """
  if len(values) == 0:
    nan = np.full(np.shape(values)[1:], np.nan)
    return _scalar(nan), _scalar(nan)
  tail = 50 * (1 - level)
  lo, hi = np.percentile(values, [tail, 100 - tail], axis=0)
  return _scalar(lo), _scalar(hi)


def _scalar(values):
  """A float for a 0-d array, else the array: results have the shape of what was asked for."""
  return float(values) if np.ndim(values) == 0 else values


# Power laws and frontiers.


@dataclasses.dataclass(frozen=True, eq=False)
class PowerLaw:
  """y = coefficient * x**exponent + offset. Loss against compute, L(C) = a C^-b (+ E), has coefficient a, exponent
  -b and offset E (0 unless fitted). `samples` holds bootstrap refits as rows (coefficient, exponent, offset)."""
  coefficient: float
  exponent: float
  offset: float = 0.0
  samples: np.ndarray = dataclasses.field(default_factory=lambda: np.empty((0, 3)))
  level: float = 0.95
  failed_resamples: int = 0  # Resamples whose fit was undefined (e.g. fewer than two distinct points), dropped.

  @property
  def intervals(self) -> dict[str, tuple[float, float]]:
    lo, hi = _interval(self.samples, self.level)
    return {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(POWER_NAMES)}

  def predict(self, x):
    return _scalar(_power([self.coefficient, self.exponent, self.offset], x))

  def predict_interval(self, x) -> tuple:
    return _interval(_power(self.samples, x), self.level)


def _power(rows, x) -> np.ndarray:
  """coefficient * x**exponent + offset for rows [..., 3] of (coefficient, exponent, offset): shape [..., *x]."""
  rows, x = np.asarray(rows, float), np.asarray(x, float)
  coefficient, exponent, offset = (rows[..., i].reshape(rows.shape[:-1] + (1,) * x.ndim) for i in range(3))
  return coefficient * x**exponent + offset


def fit_power_law(x, y, *, offset: bool = False) -> PowerLaw:
  """y = c x^p fitted by least squares on log y: a straight line in log-log. With `offset`, y = c x^p + E with E in
  [0, min y], also by least squares on log y (scipy's least_squares from the straight line through y - min(y) / 2).
  No intervals: the fits over runs below bootstrap it."""
  x, y = _positive(x, 'x'), _positive(y, 'y')
  if len(x) != len(y) or len(np.unique(x)) < 2 + offset:
    raise errors.InputError(f'a power law needs {2 + offset} or more distinct x with one y each, got x {x} and y {y}')
  log_x, log_y = np.log(x), np.log(y)
  slope, intercept = np.polyfit(log_x, log_y, 1)
  if not offset:
    return PowerLaw(float(np.exp(intercept)), float(slope))
  floor = y.min()
  slope, intercept = np.polyfit(log_x, np.log(y - floor / 2), 1)
  residuals = lambda theta: np.log(np.exp(theta[0] + theta[1] * log_x) + theta[2]) - log_y
  from scipy import optimize  # noqa: PLC0415
  fit = optimize.least_squares(residuals, [intercept, slope, floor / 2], bounds=([-np.inf, -np.inf, 0],
                                                                                   [np.inf, np.inf, floor]))
  return PowerLaw(float(np.exp(fit.x[0])), float(fit.x[1]), float(fit.x[2]))


def _vector(law: PowerLaw) -> np.ndarray:
  return np.array([law.coefficient, law.exponent, law.offset])


def frontier(flops, loss) -> np.ndarray:
  """Indices of the compute-efficient frontier of (C, L) points, by increasing C: the points whose loss is below
  that of every point of no more compute (the lower envelope Kaplan et al. and Hoffmann et al. fit)."""
  flops, loss = np.asarray(flops, float).ravel(), np.asarray(loss, float).ravel()
  order = np.lexsort((loss, flops))  # By compute, the lower loss first among equal computes.
  best_before = np.concatenate([[np.inf], np.minimum.accumulate(loss[order])[:-1]])
  return order[loss[order] < best_before]


@dataclasses.dataclass(frozen=True, eq=False)
class Envelope:
  """The lowest loss over the runs' training curves at each compute of `flops`: `loss`, the index of the run that
  reaches it (`run`), that run's N (`params`) and the tokens it has seen there (`tokens`)."""
  flops: np.ndarray
  loss: np.ndarray
  run: np.ndarray
  params: np.ndarray
  tokens: np.ndarray


def _along_curve(curve_x: np.ndarray, curve_y: np.ndarray, x) -> np.ndarray:
  """curve_y at x by log-log interpolation along the logged points; NaN outside the range they span."""
  return np.exp(np.interp(np.log(x), np.log(curve_x), np.log(curve_y), left=np.nan, right=np.nan))


def _require_curves(runs: Sequence[Run]) -> None:
  missing = [i for i, run in enumerate(runs) if len(run.curve_flops) == 0]
  if missing or not runs:
    raise errors.InputError(f'this fit reads the runs\' validation curves: runs {missing} of {len(runs)} have none '
                            '(Run.curve_tokens, curve_flops, curve_loss)')


def curve_envelope(runs: Sequence[Run], flops=None, *, num_points: int = 200,
                   exclude_extreme_sizes: bool = False) -> Envelope:
  """The envelope of the runs' curves, each read by log-log interpolation inside the range it logged, at `flops`
  (default `num_points` log-spaced computes from the first logged compute to the last; Chinchilla used 1500).
  Computes no curve covers are left out, and with `exclude_extreme_sizes` so are those where the smallest or the
  largest size is lowest: there the optimum may lie beyond the sizes trained, and N* would read clamped to them.
  """
  _require_curves(runs)
  if flops is None:
    flops = np.geomspace(min(run.curve_flops[0] for run in runs), max(run.curve_flops[-1] for run in runs),
                         num_points)
  flops = _positive(flops, 'flops')
  loss = np.stack([_along_curve(run.curve_flops, run.curve_loss, flops) for run in runs])  # [runs, computes]
  covered = np.isfinite(loss).any(axis=0)
  flops, loss = flops[covered], loss[:, covered]
  best = np.argmin(np.where(np.isfinite(loss), loss, np.inf), axis=0)
  params = np.array([run.params for run in runs])
  if exclude_extreme_sizes:
    interior = (params[best] > params.min()) & (params[best] < params.max())
    flops, loss, best = flops[interior], loss[:, interior], best[interior]
  tokens = [_along_curve(runs[j].curve_flops, runs[j].curve_tokens, c) for j, c in zip(best, flops)]
  return Envelope(flops, loss[best, np.arange(len(flops))], best, params[best], np.array(tokens))


def _frontier_points(runs: Sequence[Run], from_curves: bool, num_points: int,
                     exclude_extreme_sizes: bool) -> tuple[np.ndarray, np.ndarray]:
  """(C, L) of the compute-efficient frontier: the curves' envelope, or the frontier of the final points."""
  if from_curves:
    envelope = curve_envelope(runs, num_points=num_points, exclude_extreme_sizes=exclude_extreme_sizes)
    return envelope.flops, envelope.loss
  flops, loss = np.array([run.flops for run in runs]), np.array([run.loss for run in runs])
  kept = frontier(flops, loss)
  return flops[kept], loss[kept]


def _undefined_is_none(estimate: Callable) -> Callable:
  """`estimate`, returning None where a resample leaves its fit undefined (it raised InputError)."""

  def guarded(indices):
    try:
      return estimate(indices)
    except errors.InputError:
      return None

  return guarded


def fit_loss_frontier(runs: Sequence[Run], *, from_curves: bool = True, offset: bool = False, num_points: int = 200,
                      exclude_extreme_sizes: bool = True, num_bootstrap: int = 200, level: float = 0.95,
                      seed: int = 0) -> PowerLaw:
  """L(C) = a C^-b fitted in log space to the compute-efficient frontier: the envelope of the runs' training curves
  (`from_curves`, on `num_points` log-spaced computes, so each decade weighs the same; see `curve_envelope` for
  `exclude_extreme_sizes`) or the frontier of their final (C, L) points.

  No irreducible loss by default: over the two or three decades a sweep spans, an E fitted to the frontier alone
  trades off against b and is poorly determined; Approach 3's E is the better estimate. `offset=True` fits
  L(C) = E + a C^-b. Intervals: a resample of runs holds each run once or more, and repeats do not move a frontier,
  so they show which runs the frontier rests on rather than sampling noise.
  """
  _check_level(level)
  points = lambda chosen: _frontier_points(chosen, from_curves, num_points, exclude_extreme_sizes)
  law = fit_power_law(*points(runs), offset=offset)
  estimate = _undefined_is_none(lambda indices: _vector(fit_power_law(*points([runs[i] for i in indices]),
                                                                      offset=offset)))
  samples, failed = _bootstrap(len(runs), estimate, num_bootstrap, 3, seed)
  return dataclasses.replace(law, samples=samples, level=level, failed_resamples=failed)


# Compute-optimal allocations (Approaches 1 and 2).


@dataclasses.dataclass(frozen=True, eq=False)
class Allocation:
  """The compute-optimal model size and training tokens for the budgets `flops`: `params` N, `tokens` D and
  `tokens_per_param` D / N, each one's bootstrap (lo, hi) at `level` in `intervals`."""
  flops: float | np.ndarray
  params: float | np.ndarray
  tokens: float | np.ndarray
  tokens_per_param: float | np.ndarray
  intervals: dict[str, tuple]
  level: float


def _allocation(flops, params, tokens, params_samples, tokens_samples, level: float) -> Allocation:
  """An Allocation from point values and paired bootstrap samples ([S, *flops] each, from the same resamples)."""
  intervals = {'params': _interval(params_samples, level), 'tokens': _interval(tokens_samples, level),
               'tokens_per_param': _interval(tokens_samples / params_samples, level)}
  return Allocation(_scalar(np.asarray(flops, float)), _scalar(params), _scalar(tokens), _scalar(tokens / params),
                    intervals, level)


@dataclasses.dataclass(frozen=True, eq=False)
class OptimalScaling:
  """N*(C) = `params_law` and D*(C) = `tokens_law`, power laws in log space through the optima found at the
  computes `flops`: N* `params`, D* `tokens` and the loss there, `loss`. Row i of both laws' samples comes from the
  same resample of runs, so `compute_optimal`'s D / N interval is paired."""
  params_law: PowerLaw
  tokens_law: PowerLaw
  flops: np.ndarray
  params: np.ndarray
  tokens: np.ndarray
  loss: np.ndarray

  def compute_optimal(self, flops) -> Allocation:
    return _allocation(flops, _power(_vector(self.params_law), flops), _power(_vector(self.tokens_law), flops),
                       _power(self.params_law.samples, flops), _power(self.tokens_law.samples, flops),
                       self.params_law.level)


def _optimal_scaling(optima: Callable, runs: Sequence[Run], num_bootstrap: int, level: float,
                     seed: int) -> OptimalScaling:
  """Power laws N*(C) and D*(C) through `optima(runs)` = (C, N*, D*, loss), bootstrapped over runs."""
  _check_level(level)
  flops, params, tokens, loss = optima(runs)

  def estimate(indices):
    c, n, d, _ = optima([runs[i] for i in indices])
    return np.concatenate([_vector(fit_power_law(c, n)), _vector(fit_power_law(c, d))])

  samples, failed = _bootstrap(len(runs), _undefined_is_none(estimate), num_bootstrap, 6, seed)
  bootstrapped = lambda law, columns: dataclasses.replace(law, samples=samples[:, columns], level=level,
                                                          failed_resamples=failed)
  return OptimalScaling(bootstrapped(fit_power_law(flops, params), slice(0, 3)),
                        bootstrapped(fit_power_law(flops, tokens), slice(3, 6)), flops, params, tokens, loss)


def fit_envelope(runs: Sequence[Run], *, flops=None, num_points: int = 200, exclude_extreme_sizes: bool = True,
                 num_bootstrap: int = 200, level: float = 0.95, seed: int = 0) -> OptimalScaling:
  """Chinchilla's Approach 1: at each compute of `flops` (see `curve_envelope`), the run whose curve is lowest there
  gives N*(C), its N, and D*(C), the tokens it has seen; N* ∝ C^a and D* ∝ C^b are fitted to those points.

  The computes where the smallest or the largest size is lowest are left out by default: N* is clamped there (the
  smallest model leads the first computes and the largest the last whatever the optimum), which flattened the
  exponent from 0.51 to 0.41 on tests/test_scaling.py's synthetic curves. A curve's point stands for a run trained to
  that compute only if its learning-rate schedule suits that length (Chinchilla trained four cosine lengths per
  size); with one schedule per size, mid-run points read high.
  """

  def optima(chosen):
    envelope = curve_envelope(chosen, flops, num_points=num_points, exclude_extreme_sizes=exclude_extreme_sizes)
    if len(envelope.flops) < 2:
      raise errors.InputError(f'Approach 1 found {len(envelope.flops)} computes on the envelope'
                              f'{" led by neither the smallest nor the largest size" * exclude_extreme_sizes}: train '
                              'sizes on both sides of the optimum over a range of compute')
    return envelope.flops, envelope.params, envelope.tokens, envelope.loss

  return _optimal_scaling(optima, runs, num_bootstrap, level, seed)


@dataclasses.dataclass(frozen=True, eq=False)
class IsoflopProfile:
  """One budget of Approach 2: the runs' N (`params`) and their loss read off their curves at compute `flops`, the
  parabola loss = p[0] x^2 + p[1] x + p[2] in x = ln N fitted to them (`parabola`, NaN with fewer than three distinct
  N), and its vertex, `optimal_params` and `optimal_loss`: NaN unless it is a minimum inside the N sampled."""
  flops: float
  params: np.ndarray
  loss: np.ndarray
  parabola: np.ndarray
  optimal_params: float
  optimal_loss: float


def isoflop_profiles(runs: Sequence[Run], budgets) -> list[IsoflopProfile]:
  """The IsoFLOP profile of each budget: every run whose curve spans it, read there by log-log interpolation.

  A vertex outside the N sampled is an extrapolation, not an observed optimum, so it is left out (NaN); so is a
  parabola that opens downward.
  """
  _require_curves(runs)
  budgets = _positive(budgets, 'budgets')
  params = np.array([run.params for run in runs])
  loss = np.stack([_along_curve(run.curve_flops, run.curve_loss, budgets) for run in runs])  # [runs, budgets]
  profiles = []
  for budget, budget_loss in zip(budgets, loss.T):
    spans = np.isfinite(budget_loss)
    x, y = np.log(params[spans]), budget_loss[spans]
    parabola, vertex = np.full(3, np.nan), np.nan
    if len(np.unique(x)) >= 3:
      parabola = np.polyfit(x, y, 2)
      if parabola[0] > 0 and x.min() <= -parabola[1] / (2 * parabola[0]) <= x.max():
        vertex = -parabola[1] / (2 * parabola[0])
    profiles.append(IsoflopProfile(float(budget), params[spans], y, parabola, float(np.exp(vertex)),
                                   float(np.polyval(parabola, vertex))))
  return profiles


def fit_isoflop(runs: Sequence[Run], budgets, *, flops_per_token: Callable = training_flops_per_token,
                num_bootstrap: int = 200, level: float = 0.95, seed: int = 0) -> OptimalScaling:
  """Chinchilla's Approach 2: per budget C, the vertex of the parabola of loss against ln N (`isoflop_profiles`)
  gives N*(C), and D*(C) = C / flops_per_token(N*) (default 6 N*: C = 6 N D; pass the accounting the runs' logged
  FLOPs use); N* ∝ C^a and D* ∝ C^b are fitted through the vertices. Needs two budgets with a vertex.

  Reading a run mid-curve stands for a run trained to that budget only if its learning-rate schedule suits that
  length; an IsoFLOP sweep proper trains each run to its budget.
  """

  def optima(chosen):
    profiles = [p for p in isoflop_profiles(chosen, budgets) if np.isfinite(p.optimal_params)]
    if len(profiles) < 2:
      raise errors.InputError(f'Approach 2 needs two or more budgets with a loss minimum inside the N of the runs '
                              f'spanning them, found {len(profiles)}: choose budgets the runs\' curves span, each '
                              'with three or more sizes around its optimum')
    flops = np.array([p.flops for p in profiles])
    params = np.array([p.optimal_params for p in profiles])
    return flops, params, flops / flops_per_token(params), np.array([p.optimal_loss for p in profiles])

  return _optimal_scaling(optima, runs, num_bootstrap, level, seed)


# Approach 3: L(N, D) = E + A / N^alpha + B / D^beta.


@dataclasses.dataclass(frozen=True, eq=False)
class LossLaw:
  """L(N, D) = E + A / N**alpha + B / D**beta (Chinchilla's equation 2). `samples` holds bootstrap refits as rows
  (E, A, B, alpha, beta); `objective` is the summed Huber loss at the fit."""
  E: float
  A: float
  B: float
  alpha: float
  beta: float
  samples: np.ndarray = dataclasses.field(default_factory=lambda: np.empty((0, 5)))
  level: float = 0.95
  objective: float = np.nan
  failed_resamples: int = 0  # Refits that ended non-finite, dropped.

  @property
  def intervals(self) -> dict[str, tuple[float, float]]:
    lo, hi = _interval(self.samples, self.level)
    return {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(LAW_NAMES)}

  def _row(self) -> np.ndarray:
    return np.array([self.E, self.A, self.B, self.alpha, self.beta])

  def predict(self, params, tokens):
    return _scalar(_law_loss(self._row(), params, tokens))

  def predict_interval(self, params, tokens) -> tuple:
    return _interval(_law_loss(self.samples, params, tokens), self.level)

  def compute_optimal(self, flops, *, flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN) -> Allocation:
    """The allocation minimising L(N, D) at C = k N D (k = `flops_per_param_token`), in closed form:
    N_opt = G (C / k)^(beta / (alpha + beta)) with G = (alpha A / (beta B))^(1 / (alpha + beta)); D_opt = C / (k N_opt).
    """
    params = lambda rows: _optimal_params(rows, flops, flops_per_param_token)
    tokens = lambda rows: np.asarray(flops, float) / flops_per_param_token / params(rows)
    return _allocation(flops, params(self._row()), tokens(self._row()), params(self.samples), tokens(self.samples),
                       self.level)


def _law_columns(rows, x) -> tuple[np.ndarray, ...]:
  """E, A, B, alpha, beta of rows [..., 5], shaped to broadcast against x: [..., 1 per axis of x]."""
  rows = np.asarray(rows, float)
  return tuple(rows[..., i].reshape(rows.shape[:-1] + (1,) * np.ndim(x)) for i in range(5))


def _law_loss(rows, params, tokens) -> np.ndarray:
  params, tokens = np.broadcast_arrays(np.asarray(params, float), np.asarray(tokens, float))
  e, a, b, alpha, beta = _law_columns(rows, params)
  return e + a / params**alpha + b / tokens**beta


def _optimal_params(rows, flops, flops_per_param_token: float) -> np.ndarray:
  _, a, b, alpha, beta = _law_columns(rows, flops)
  scale = (alpha * a / (beta * b)) ** (1 / (alpha + beta))
  return scale * (np.asarray(flops, float) / flops_per_param_token) ** (beta / (alpha + beta))


def start_grid() -> np.ndarray:
  """Besiroglu et al.'s (and Hoffmann et al.'s) 4500 starts as rows (a, b, e, alpha, beta) = (log A, log B, log E,
  alpha, beta): a, b in {0, 5, ..., 25}, e in {-1, -0.5, ..., 1}, alpha, beta in {0, 0.5, ..., 2}."""
  coefficients, floors, exponents = np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5), np.arange(0, 2.5, 0.5)
  return np.array(list(itertools.product(coefficients, coefficients, floors, exponents, exponents)), float)


def _huber(residual: np.ndarray) -> np.ndarray:
  """Huber's loss: quadratic within HUBER_DELTA of 0, linear beyond."""
  size = np.abs(residual)
  return np.where(size <= HUBER_DELTA, 0.5 * residual**2, HUBER_DELTA * (size - 0.5 * HUBER_DELTA))


def _log_terms(theta, log_params, log_tokens) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """a - alpha ln N, b - beta ln D and e, whose log-sum-exp is the predicted ln L; theta [..., 5] broadcasts
  against the runs (last axis)."""
  a, b, e, alpha, beta = (np.asarray(theta, float)[..., i, None] for i in range(5))
  params_term = a - alpha * log_params
  return params_term, b - beta * log_tokens, np.broadcast_to(e, params_term.shape)


def _objective(theta, log_params, log_tokens, log_loss, weights) -> tuple[float, np.ndarray]:
  """The weighted sum over runs of Huber(predicted - observed ln L), and its gradient in theta = (a, b, e, alpha,
  beta). A bootstrap resample is the same sum with each run weighted by how often it was drawn."""
  terms = _log_terms(theta, log_params, log_tokens)
  predicted = np.logaddexp(np.logaddexp(terms[0], terms[1]), terms[2])
  share_n, share_d, share_e = (np.exp(term - predicted) for term in terms)  # d predicted / d each term.
  slope = weights * np.clip(predicted - log_loss, -HUBER_DELTA, HUBER_DELTA)  # d Huber / d predicted.
  gradient = [slope @ share_n, slope @ share_d, slope @ share_e, -(slope * share_n) @ log_params,
              -(slope * share_d) @ log_tokens]
  return float(weights @ _huber(predicted - log_loss)), np.array(gradient)


def _grid_objective(starts: np.ndarray, log_params, log_tokens, log_loss) -> np.ndarray:
  """The unweighted objective at each row of starts [S, 5] at once, in chunks that bound the [S, runs] arrays;
  non-finite values become inf."""
  values = []
  for chunk in np.array_split(starts, -(-len(starts) * len(log_loss) // 2**20)):
    terms = _log_terms(chunk, log_params, log_tokens)
    predicted = np.logaddexp(np.logaddexp(terms[0], terms[1]), terms[2])
    values.append(_huber(predicted - log_loss).sum(axis=-1))
  values = np.concatenate(values)
  return np.where(np.isfinite(values), values, np.inf)


@contextlib.contextmanager
def _one_blas_thread():
  """scipy's bundled OpenBLAS (scipy.libs/ of its wheels) on one thread meanwhile, its thread count restored after.

  scipy >= 1.15's L-BFGS-B calls BLAS on tiny arrays, and with OpenBLAS's threads it ran 7-100x slower on this
  project's busy 2-core machines: 3.6 ms against 375 ms for one L-BFGS run of fit_loss_law (scipy issue #22438;
  OPENBLAS_NUM_THREADS=1 before numpy starts does the same; threadpoolctl is not a dependency). Where scipy links
  another BLAS (conda's MKL, a system OpenBLAS), this changes nothing.
  """
  libraries = []
  for path in glob.glob(os.path.join(os.path.dirname(scipy.__file__) + '.libs', '*openblas*')):
    library = ctypes.CDLL(path)  # Already loaded by scipy: the same library, not a second copy.
    if hasattr(library, 'scipy_openblas_set_num_threads') and hasattr(library, 'scipy_openblas_get_num_threads'):
      libraries.append((library, library.scipy_openblas_get_num_threads()))
      library.scipy_openblas_set_num_threads(1)
  try:
    yield
  finally:
    for library, threads in libraries:
      library.scipy_openblas_set_num_threads(threads)


def _minimise(start, data: tuple, weights) -> tuple[np.ndarray, float]:
  from scipy import optimize  # noqa: PLC0415
  result = optimize.minimize(_objective, start, args=(*data, weights), jac=True, method='L-BFGS-B',
                             options=_LBFGS_OPTIONS)
  return result.x, float(result.fun)


def _law_row(theta: np.ndarray) -> np.ndarray:
  """(E, A, B, alpha, beta) from theta = (a, b, e, alpha, beta)."""
  a, b, e, alpha, beta = theta
  return np.array([np.exp(e), np.exp(a), np.exp(b), alpha, beta])


def fit_loss_law(runs: Sequence[Run], *, starts=None, num_starts: int | None = 5, num_bootstrap: int = 200,
                 level: float = 0.95, seed: int = 0) -> LossLaw:
  """Chinchilla's Approach 3 on the runs' final (N, D, L), fitted as Hoffmann et al. (appendix D.2) and Besiroglu et
  al. do: with theta = (a, b, e, alpha, beta) = (log A, log B, log E, alpha, beta), the predicted log loss is
  LSE(a - alpha log N, b - beta log D, e), and L-BFGS minimises the Huber loss (delta 1e-3) of predicted minus
  observed log loss, summed (not averaged) over runs.

  The point estimate starts from `starts` (rows of theta; default `start_grid()`): each is scored in one vectorised
  pass and L-BFGS runs from the `num_starts` best (None: from every start, as the papers do); the lowest optimum
  wins. On tests/test_scaling.py's synthetic sweeps (seeds 0-2) the best 1, 5 and 10 starts and all 4500 reached
  the same optimum; all 4500 take 30-90 s a fit on a 2-core VM, the 5 best 0.1 s. Bootstrap refits start from the
  point estimate only.
  """
  _check_level(level)
  if len(runs) < 5:
    raise errors.InputError(f'L(N, D) has 5 parameters: fitting it needs 5 or more runs, got {len(runs)}')
  if num_starts is not None and num_starts < 1:
    raise errors.InputError(f'num_starts is how many of the best starts L-BFGS runs from (None: all), got {num_starts}')
  data = tuple(np.log([[getattr(run, name) for run in runs] for name in ('params', 'tokens', 'loss')]))
  starts = start_grid() if starts is None else np.asarray(starts, float).reshape(-1, 5)
  if not len(starts):
    raise errors.InputError('fit_loss_law needs one or more starts')
  scores = _grid_objective(starts, *data)
  best_starts = starts[np.argsort(scores, kind='stable')[:num_starts]]
  with _one_blas_thread():
    theta, objective = min((_minimise(start, data, np.ones(len(runs))) for start in best_starts), key=lambda f: f[1])
    refit = lambda indices: _law_row(_minimise(theta, data, np.bincount(indices, minlength=len(runs)).astype(float))[0])
    samples, failed = _bootstrap(len(runs), refit, num_bootstrap, 5, seed)
  return LossLaw(*_law_row(theta), samples=samples, level=level, objective=objective, failed_resamples=failed)


@dataclasses.dataclass(frozen=True, eq=False)
class HeldOut:
  """Approach 3 fitted without the held-out runs (the largest), and its predictions of their final losses."""
  law: LossLaw
  held_out: tuple[Run, ...]
  predicted: np.ndarray
  observed: np.ndarray

  @property
  def relative_error(self) -> np.ndarray:
    """predicted / observed - 1 for each held-out run."""
    return self.predicted / self.observed - 1


def held_out_error(runs: Sequence[Run], *, num_held_out: int = 1, by: str = 'flops', **fit_options) -> HeldOut:
  """Fits `fit_loss_law` to all but the `num_held_out` largest runs by `by` ('flops': C, or 'params': N) and predicts
  the held-out ones: the extrapolation error says how far beyond the sweep the law holds. `fit_options` go to
  fit_loss_law (no bootstrap unless num_bootstrap is given)."""
  if by not in ('flops', 'params'):
    raise errors.InputError(f"held_out_error's `by` is 'flops' or 'params', got {by!r}")
  if not 1 <= num_held_out <= len(runs) - 5:
    raise errors.InputError(f'num_held_out must leave the 5 runs a fit needs, got {num_held_out} of {len(runs)}')
  order = sorted(range(len(runs)), key=lambda i: getattr(runs[i], by))
  kept, held_out = [runs[i] for i in order[:-num_held_out]], tuple(runs[i] for i in order[-num_held_out:])
  law = fit_loss_law(kept, **{'num_bootstrap': 0, **fit_options})
  predicted = law.predict([run.params for run in held_out], [run.tokens for run in held_out])
  return HeldOut(law, held_out, np.asarray(predicted), np.array([run.loss for run in held_out]))
