"""Bootstrap intervals for the steps-to-target tradeoff: S_min, E_min, B_crit and S(B) at any B.

Inputs are *runs*: one row per run of the best setting at each batch, with the interval in which
the run crossed the target, (steps_lo, steps_hi] — the last evaluation below the target and the
first at it (equal where the steps are known exactly, as in published tables).

One bootstrap replicate (Efron & Tibshirani 1993, "An Introduction to the Bootstrap": ch. 9,
resampling cases of a regression; ch. 13, percentile intervals):
1. resample the batches with replacement (a case bootstrap over batches: with one run per batch
   this is what carries the scatter of the points about the curve into the interval; a
   replicate with fewer than two distinct batches is drawn again);
2. within each drawn batch, resample its runs with replacement (seeds and repeats);
3. draw each run's crossing uniformly within its (steps_lo, steps_hi] (the evaluations only say
   that it lies there);
4. fit S = S_min + E_min/B to the batch means (`tradeoff.fit_tradeoff`).

The interval of a quantity is the central `LEVEL` of its replicates. The point estimate is the
fit to the interval midpoints, averaged over each batch's runs (`midpoints`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

N_BOOT = 1000
LEVEL = 0.95
SEED = 0
RUN_COLUMNS = ("global_batch", "steps_lo", "steps_hi")


def midpoints(runs: pd.DataFrame) -> pd.DataFrame:
    """Per batch: n_runs, steps (mean of the runs' interval midpoints), steps_lo and steps_hi
    (means of the bounds), sorted by batch."""
    mid = runs.assign(steps=(runs["steps_lo"] + runs["steps_hi"]) / 2)
    g = mid.groupby("global_batch", sort=True)
    return pd.DataFrame({"n_runs": g.size(), "steps": g["steps"].mean(), "steps_lo": g["steps_lo"].mean(),
                         "steps_hi": g["steps_hi"].mean()}).reset_index()


def bootstrap_draws(runs: pd.DataFrame, fit, n_boot: int = N_BOOT, seed: int = SEED) -> np.ndarray:
    """(n, 2) array of (S_min, E_min), one row per replicate (module docstring); `fit` is
    `tradeoff.fit_tradeoff`. Empty with fewer than two distinct batches. Deterministic in `seed`."""
    groups = [part[["steps_lo", "steps_hi"]].to_numpy(float) for _, part in runs.groupby("global_batch", sort=True)]
    batches = np.array(sorted(runs["global_batch"].unique()), dtype=float)
    if len(groups) < 2:
        return np.empty((0, 2))
    rng, draws = np.random.default_rng(seed), []
    while len(draws) < n_boot:
        pick = rng.integers(0, len(groups), size=len(groups))
        if len(np.unique(pick)) < 2:
            continue
        steps = [_resampled_mean(groups[i], rng) for i in pick]
        result = fit(batches[pick], steps)
        draws.append((result.s_min, result.e_min))
    return np.asarray(draws, dtype=float)


def _resampled_mean(bounds: np.ndarray, rng: np.random.Generator) -> float:
    rows = bounds[rng.integers(0, len(bounds), size=len(bounds))]
    crossing = rng.uniform(rows[:, 0], rows[:, 1])
    return float(np.maximum(crossing, 1e-9 * rows[:, 1]).mean())  # a crossing at 0 steps is not one


def interval(values, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` of `values` (NaN dropped; ±inf kept: no interpolation between them)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2
    lo, hi = np.quantile(values, [tail, 1.0 - tail], method="inverted_cdf")
    return float(lo), float(hi)


def b_crit_of(draws: np.ndarray) -> np.ndarray:
    """E_min/S_min per replicate: inf where S_min = 0 < E_min, NaN where both are 0."""
    s, e = draws[:, 0], draws[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 0, e / np.where(s > 0, s, 1.0), np.where(e > 0, np.inf, np.nan))


def steps_band(draws: np.ndarray, batch, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The interval of S(B) = S_min + E_min/B at each of `batch` over the replicates."""
    b = np.atleast_1d(np.asarray(batch, dtype=float))
    if draws.size == 0:
        return np.full(b.shape, np.nan), np.full(b.shape, np.nan)
    steps = draws[:, :1] + draws[:, 1:] / b[None, :]
    bounds = np.array([interval(steps[:, j], level) for j in range(b.size)])
    return bounds[:, 0], bounds[:, 1]
