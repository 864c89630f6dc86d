"""Steps and samples to a target against batch size, fitted to the large-batch tradeoff.

References: McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch Training"
(arXiv:1812.06162), section 2.3 and eq. 2.11: training to a fixed target with the best learning
rate at each batch size B follows

    (S/S_min − 1)(E/E_min − 1) = 1,   i.e.   S = S_min (1 + B_crit/B),  E = E_min (1 + B/B_crit)

with S the optimizer steps, E = B·S the samples, and the critical batch B_crit = E_min/S_min:
below it more data parallelism buys nearly proportionally fewer steps, above it nearly none.
The paper predicts B_crit ≈ B_noise (the gradient noise scale, `noise.py`), which is set beside it.

Definitions:
- A run's steps and samples to the target are those of `results.targets.time_to_target` (its first
  evaluation at or past the target; an upper bound by at most one evaluation interval).
- At each (task, model, optimizer, global batch) a *setting* is one choice of the learning rate
  (`hp.optimizer.lr` where the records were swept, else `peak_lr`) and of every other swept
  hyperparameter except seed, worker count and accumulation (which do not change the steps at a
  fixed global batch); its runs are repeats. The best setting at a batch is the one whose runs
  reached the target most often, then in the fewest mean steps.
- S = S_min + E_min/B is linear in (S_min, E_min): the fit is non-negative least squares (numpy;
  two unknowns need no solver) on the relative residuals (S_i − S(B_i))/S_i, so that a batch with few steps weighs as much as one with
  many. Goodness of fit: the RMS relative residual and R² of log S.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling_study.contract import HP_PREFIX
from scaling_study.results.records import Needs, ordered
from scaling_study.results.sweeps import grid_lr_column
from scaling_study.results.targets import Target, time_to_target

GROUP_KEYS = ("task", "model", "optimizer")
# Swept keys that do not define a setting: repeats, or the same global batch reached otherwise.
_NOT_SETTING = ("seed", "worker", "accum", "batch")
TRADEOFF = Needs("steps to target against batch size", ("optimizer", "global_batch", "step"))


@dataclass(frozen=True)
class TradeoffFit:
    """S(B) = S_min (1 + B_crit/B) fitted to (batch, steps) points."""

    s_min: float
    e_min: float
    rms_rel_error: float
    """RMS of (S_i − S(B_i))/S_i; NaN with only two batches (the fit is then exact)."""
    r2_log: float
    """R² of log S against log S(B); NaN with only two batches."""
    batches: tuple[float, ...]

    @property
    def b_crit(self) -> float:
        """E_min/S_min; inf where steps fell as 1/B over every batch measured (S_min = 0)."""
        if self.s_min > 0:
            return self.e_min / self.s_min
        return math.inf if self.e_min > 0 else math.nan

    @classmethod
    def from_row(cls, row: pd.Series) -> TradeoffFit:
        """The fit of one `tradeoff_table` row (which must have one: s_min not NaN)."""
        batches = tuple(float(b) for b in str(row["batches"]).split(","))
        return cls(row["s_min"], row["e_min"], row["rms_rel_error"], row["r2_log"], batches)

    def steps(self, batch) -> np.ndarray | float:
        """Predicted optimizer steps to the target at global batch `batch`."""
        return self.s_min + self.e_min / np.asarray(batch, dtype=float)

    def samples(self, batch) -> np.ndarray | float:
        """Predicted samples to the target, E = B·S = E_min + S_min·B."""
        return self.e_min + self.s_min * np.asarray(batch, dtype=float)


def fit_tradeoff(batch, steps) -> TradeoffFit:
    """Fit S_min, E_min ≥ 0 to steps-to-target at each batch (see the module docstring).

    Raises ValueError for fewer than two distinct batches or a non-positive value.
    """
    b, s = np.asarray(batch, dtype=float), np.asarray(steps, dtype=float)
    if b.shape != s.shape or len(np.unique(b)) < 2:
        raise ValueError(f"need steps at two or more distinct batch sizes, got batches {b.tolist()}")
    if (b <= 0).any() or (s <= 0).any() or not np.isfinite(s).all():
        raise ValueError(f"batches and steps must be positive and finite: {b.tolist()}, {s.tolist()}")
    design = np.column_stack([np.ones_like(b), 1.0 / b]) / s[:, None]
    s_min, e_min = _nonnegative_lstsq(design, np.ones_like(s))
    # Round-off is not a finite B_crit: a term below 1e-9 of the smallest measured value is 0.
    s_min = s_min if s_min > 1e-9 * s.min() else 0.0
    e_min = e_min if e_min > 1e-9 * (s * b).min() else 0.0
    predicted = s_min + e_min / b
    rms, r2 = math.nan, math.nan
    if len(b) > 2:
        rms = float(np.sqrt(np.mean(((s - predicted) / s) ** 2)))
        log_s = np.log(s)
        total = float(np.sum((log_s - log_s.mean()) ** 2))
        resid = float(np.sum((log_s - np.log(predicted)) ** 2))
        r2 = 1.0 - resid / total if total > 0 else math.nan
    return TradeoffFit(float(s_min), float(e_min), rms, r2, tuple(np.unique(b)))


def _nonnegative_lstsq(a: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """argmin |a x − y|² over x ≥ 0 for two unknowns: the unconstrained solution if feasible,
    else the better of the two one-unknown fits (the optimum then lies on an axis)."""
    x, *_ = np.linalg.lstsq(a, y, rcond=None)
    if (x >= 0).all():
        return float(x[0]), float(x[1])
    best, best_err = (0.0, 0.0), float(y @ y)
    for i in (0, 1):
        col = a[:, i]
        xi = max(0.0, float(col @ y) / float(col @ col))
        err = float(np.sum((y - xi * col) ** 2))
        if err < best_err:
            best, best_err = ((xi, 0.0) if i == 0 else (0.0, xi)), err
    return best


def setting_columns(table: pd.DataFrame) -> list[str]:
    """The LR column and every other swept column that defines a setting (module docstring)."""
    lr = grid_lr_column(table)
    swept = [c for c in table.columns if c.startswith(HP_PREFIX) and c != lr
             and not any(word in c for word in _NOT_SETTING)]
    return [lr, *swept]


def steps_to_target(records: pd.DataFrame, target: Target) -> pd.DataFrame:
    """Per (task, model, optimizer, global batch): the best setting and its steps to `target`.

    Columns: the group keys present, global_batch, lr_column, lr (the best setting's), peak_lr and
    lr_rule (as its runs ran), the other setting columns, n_runs, n_reached, steps, samples and
    train_time_s (means over its runs that reached; NaN where none did), n_settings (tried at
    that batch). Sorted by group and batch.
    """
    TRADEOFF.check(records)
    per_run = time_to_target(records, target)
    keys = [k for k in GROUP_KEYS if k in per_run.columns]
    setting = setting_columns(per_run)
    cells = _setting_cells(per_run, [*keys, "global_batch", *setting])
    cells["n_settings"] = cells.groupby([*keys, "global_batch"], dropna=False)["n_runs"].transform("size")
    cells["reach_rate"] = cells["n_reached"] / cells["n_runs"]
    best = cells.sort_values(["reach_rate", "steps"], ascending=[False, True], na_position="last", kind="stable")
    best = best.drop_duplicates([*keys, "global_batch"]).drop(columns="reach_rate")
    best = best.rename(columns={setting[0]: "lr"})
    best.insert(len(keys) + 1, "lr_column", setting[0])
    return best.sort_values([*keys, "global_batch"], kind="stable").reset_index(drop=True)


def _setting_cells(per_run: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    per_run = per_run.dropna(subset=["global_batch"])
    reached = per_run[per_run["reached"]]
    g = per_run.groupby(by, dropna=False, sort=True)
    cells = g.size().rename("n_runs").to_frame()
    cells["n_reached"] = g["reached"].sum()
    for col in ("peak_lr", "lr_rule"):
        if col in per_run.columns and col not in by:
            cells[col] = g[col].first()
    for col in ("step", "samples", "train_time_s"):
        if col in reached.columns:
            cells["steps" if col == "step" else col] = reached.groupby(by, dropna=False)[col].mean()
    return cells.reset_index()


def tradeoff_table(records: pd.DataFrame, target: Target, points: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (task, model, optimizer): the fit over its batches that reached the target.

    Columns: the group keys, s_min, e_min, b_crit, rms_rel_error, r2_log, n_batches, batches
    ("32,64,128"), b_noise_at_target and b_noise_mean (see `measured_noise_scale`; NaN without
    a `grad_noise_scale` column) and note (why a group has no fit, or what its fit means).
    `points`: `steps_to_target(records, target)` where the caller has it already.
    """
    table = steps_to_target(records, target) if points is None else points
    keys = [k for k in GROUP_KEYS if k in table.columns]
    noise = measured_noise_scale(records, target, keys)
    rows = []
    for values, part in table.dropna(subset=["steps"]).groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        row.update(_fit_row(part["global_batch"], part["steps"]))
        rows.append(row)
    out = pd.DataFrame(rows, columns=[*keys, *_FIT_COLUMNS])
    if not out.empty and not noise.empty:
        out = out.drop(columns=["b_noise_at_target", "b_noise_mean"]).merge(noise, on=keys, how="left")
    return out


_FIT_COLUMNS = ("s_min", "e_min", "b_crit", "rms_rel_error", "r2_log", "n_batches", "batches",
                "b_noise_at_target", "b_noise_mean", "note")


def _fit_row(batch: pd.Series, steps: pd.Series) -> dict:
    row = dict.fromkeys(_FIT_COLUMNS, math.nan)
    row.update(n_batches=len(batch), batches=",".join(f"{b:g}" for b in batch), note="")
    if len(batch) < 2:
        row["note"] = "one batch size reached the target: nothing to fit"
        return row
    fit = fit_tradeoff(batch, steps)
    row.update(s_min=fit.s_min, e_min=fit.e_min, b_crit=fit.b_crit,
               rms_rel_error=fit.rms_rel_error, r2_log=fit.r2_log)
    if len(batch) == 2:
        row["note"] = "two batch sizes: the fit is exact, no goodness of fit"
    elif fit.s_min == 0:
        row["note"] = "steps fell as 1/B at every batch: B_crit lies above the largest batch"
    elif fit.e_min == 0:
        row["note"] = "steps did not fall with batch: B_crit lies below the smallest batch"
    return row


def measured_noise_scale(records: pd.DataFrame, target: Target, keys: list[str]) -> pd.DataFrame:
    """Per group: the median over runs that reached `target` of grad_noise_scale at the first
    evaluation that reached it (`b_noise_at_target`) and of its mean over the evaluations up to
    there (`b_noise_mean`). Empty where the records carry no noise scale."""
    if "grad_noise_scale" not in records.columns or records["grad_noise_scale"].isna().all():
        return pd.DataFrame(columns=[*keys, "b_noise_at_target", "b_noise_mean"])
    rows = ordered(records.dropna(subset=[target.metric]))
    met = target.met(rows[target.metric]).astype(int)
    after_hit = met.groupby(rows["run"]).cummax().groupby(rows["run"]).shift(fill_value=0) > 0
    up_to = rows[~after_hit]  # each run's evaluations up to and including its first hit
    first = up_to[target.met(up_to[target.metric])].set_index("run")
    per_run = first[keys].assign(
        b_noise_at_target=first["grad_noise_scale"],
        b_noise_mean=up_to[up_to["run"].isin(first.index)].groupby("run")["grad_noise_scale"].mean())
    return per_run.groupby(keys, dropna=False)[["b_noise_at_target", "b_noise_mean"]].median().reset_index()


def tradeoff_curve(fit_row: pd.Series, n_points: int = 50) -> pd.DataFrame:
    """The fitted S(B) and E(B) over the fit's batch range (log-spaced), for a chart."""
    fit = TradeoffFit.from_row(fit_row)
    grid = np.geomspace(min(fit.batches), max(fit.batches), n_points)
    return pd.DataFrame({"global_batch": grid, "steps": fit.steps(grid), "samples": fit.samples(grid)})
