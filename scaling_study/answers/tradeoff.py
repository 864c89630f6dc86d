"""Steps and samples to a target against batch size, fitted to the large-batch tradeoff.

References: McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch Training"
(arXiv:1812.06162), section 2.3 and eq. 2.11: training to a fixed target with the best learning
rate at each batch size B follows

    (S/S_min − 1)(E/E_min − 1) = 1,   i.e.   S = S_min (1 + B_crit/B),  E = E_min (1 + B/B_crit)

with S the optimizer steps, E = B·S the samples, and the critical batch B_crit = E_min/S_min:
below it more data parallelism buys nearly proportionally fewer steps, above it nearly none.
The paper predicts B_crit ≈ B_noise (the gradient noise scale, `noise.py`), which is set beside it.

Definitions:
- A run crossed the target somewhere in (steps_lo, steps_hi]: its last evaluation below the
  target and its first at it (`results.targets.time_to_target`). A batch's steps are the mean over
  its best setting's runs of the interval midpoints; `steps_lo`/`steps_hi` the means of the
  bounds. A batch that no run took to the target is *censored*: it needs more steps than any of
  its runs trained (`censored_at`), which is a bound, not a miss.
- At each (task, model, optimizer, global batch) a *setting* is one choice of the learning rate
  (`hp.optimizer.lr` where the records were swept, else `peak_lr`) and of every other swept
  hyperparameter except seed, worker count and accumulation (which do not change the steps at a
  fixed global batch); its runs are repeats. The best setting at a batch is the one whose runs
  of the batch's first seed (the seed every setting of a sweep has) reached the target most
  often, then in the fewest mean steps: repeats at the chosen setting (more seeds) do not move
  the choice. Its steps are the mean over all its runs.
- S = S_min + E_min/B is linear in (S_min, E_min): the fit is non-negative least squares (numpy;
  two unknowns need no solver) on the relative residuals (S_i − S(B_i))/S_i, so that a batch with
  few steps weighs as much as one with many. Goodness of fit: the RMS relative residual and R² of
  log S. Intervals: a bootstrap over batches, runs and the crossing within each run's interval
  (`intervals.py`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from scaling_study.answers import intervals
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
    """S(B) = S_min (1 + B_crit/B) fitted to (batch, steps) points, with its bootstrap replicates."""

    s_min: float
    e_min: float
    rms_rel_error: float
    """RMS of (S_i − S(B_i))/S_i; NaN with only two batches (the fit is then exact)."""
    r2_log: float
    """R² of log S against log S(B); NaN with only two batches."""
    batches: tuple[float, ...]
    draws: np.ndarray = field(default_factory=lambda: np.empty((0, 2)), compare=False, repr=False)
    """(S_min, E_min) per bootstrap replicate (`intervals.bootstrap_draws`); empty: no interval."""

    @property
    def b_crit(self) -> float:
        """E_min/S_min; inf where steps fell as 1/B over every batch measured (S_min = 0)."""
        if self.s_min > 0:
            return self.e_min / self.s_min
        return math.inf if self.e_min > 0 else math.nan

    def steps(self, batch) -> np.ndarray | float:
        """Predicted optimizer steps to the target at global batch `batch`."""
        return self.s_min + self.e_min / np.asarray(batch, dtype=float)

    def samples(self, batch) -> np.ndarray | float:
        """Predicted samples to the target, E = B·S = E_min + S_min·B."""
        return self.e_min + self.s_min * np.asarray(batch, dtype=float)

    def steps_interval(self, batch) -> tuple[np.ndarray, np.ndarray]:
        """The bootstrap interval of S(B) at each of `batch` (NaN without replicates)."""
        return intervals.steps_band(self.draws, batch)

    def in_range(self, batch) -> np.ndarray:
        """Whether each of `batch` lies within the batches the fit was measured on."""
        b = np.asarray(batch, dtype=float)
        return (b >= min(self.batches)) & (b <= max(self.batches))

    def interval_columns(self) -> dict[str, float]:
        """s_min_lo/_hi, e_min_lo/_hi, b_crit_lo/_hi and n_boot: the table's interval columns."""
        out = {"n_boot": len(self.draws)}
        for name, values in (("s_min", self.draws[:, 0]), ("e_min", self.draws[:, 1]),
                             ("b_crit", intervals.b_crit_of(self.draws))):
            out[f"{name}_lo"], out[f"{name}_hi"] = intervals.interval(values)
        return out


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
    lr_rule (as its runs ran), the other setting columns, n_runs, n_reached, steps, steps_lo,
    steps_hi (module docstring), samples (steps × batch) and train_time_s (means over its runs
    that reached; NaN where none did), n_settings (tried at that batch), lr_edge ("low" or "high"
    where the best LR is the lowest or highest tried at that batch, else ""), censored_at (where
    no run at that batch reached the target: the most steps any of them trained) and vs_perfect
    (`vs_perfect`). Sorted by group and batch.
    """
    return best_settings(records, target)[0]


def tradeoff_runs(records: pd.DataFrame, target: Target) -> pd.DataFrame:
    """The runs of each batch's best setting (`steps_to_target`): the group keys, global_batch,
    run, reached, steps_lo and steps_hi (the interval of its crossing; NaN where not reached)."""
    return best_settings(records, target)[1]


def best_settings(records: pd.DataFrame, target: Target) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`steps_to_target`, `tradeoff_runs`) computed together."""
    TRADEOFF.check(records)
    per_run = time_to_target(records, target).dropna(subset=["global_batch"])
    per_run = per_run.assign(steps_lo=per_run.get("step_before", per_run["step"]), steps_hi=per_run["step"])
    keys = [k for k in GROUP_KEYS if k in per_run.columns]
    setting = setting_columns(per_run)
    cells = _setting_cells(per_run, [*keys, "global_batch", *setting])
    by_batch = cells.groupby([*keys, "global_batch"], dropna=False)
    cells["n_settings"] = by_batch["n_runs"].transform("size")
    cells["lr_edge"] = np.where(cells["n_settings"] < 2, "", np.where(
        cells[setting[0]] == by_batch[setting[0]].transform("min"), "low",
        np.where(cells[setting[0]] == by_batch[setting[0]].transform("max"), "high", "")))
    # Chosen on the runs of the batch's first seed, which every setting has: repeats of the chosen
    # setting regress to its mean and would otherwise hand the choice to another setting's one
    # lucky run. Its steps are then the mean over all its runs.
    chosen_on = _setting_cells(_first_seed(per_run, keys), [*keys, "global_batch", *setting])
    cells = cells.merge(chosen_on.assign(rate=chosen_on["n_reached"] / chosen_on["n_runs"])
                        [[*keys, "global_batch", *setting, "rate", "steps"]].rename(columns={"steps": "first_steps"}),
                        on=[*keys, "global_batch", *setting], how="left")
    best = cells.sort_values(["rate", "first_steps"], ascending=[False, True], na_position="last", kind="stable")
    best = best.drop_duplicates([*keys, "global_batch"]).drop(columns=["rate", "first_steps"])
    runs = per_run.merge(best[[*keys, "global_batch", *setting]], on=[*keys, "global_batch", *setting])
    censored = per_run.groupby([*keys, "global_batch"], dropna=False)["last_step"].max().rename("censored_at") \
        if "last_step" in per_run.columns else None
    best = best.rename(columns={setting[0]: "lr"})
    best.insert(len(keys) + 1, "lr_column", setting[0])
    best = best.sort_values([*keys, "global_batch"], kind="stable").reset_index(drop=True)
    if censored is not None:
        best = best.merge(censored.reset_index(), on=[*keys, "global_batch"], how="left")
        best.loc[best["n_reached"] > 0, "censored_at"] = np.nan
    best["vs_perfect"] = vs_perfect(best, keys)
    return best, runs[[*keys, "global_batch", "run", "reached", "steps_lo", "steps_hi"]].reset_index(drop=True)


def _first_seed(per_run: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The runs of each batch's smallest seed (all runs where no seed is recorded)."""
    if "seed" not in per_run.columns or per_run["seed"].isna().all():
        return per_run
    first = per_run.groupby([*keys, "global_batch"], dropna=False)["seed"].transform("min")
    return per_run[(per_run["seed"] == first) | first.isna()]


def _setting_cells(per_run: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    reached = per_run[per_run["reached"]]
    reached = reached.assign(mid=(reached["steps_lo"] + reached["steps_hi"]) / 2)
    g = per_run.groupby(by, dropna=False, sort=True)
    cells = g.size().rename("n_runs").to_frame()
    cells["n_reached"] = g["reached"].sum()
    for col in ("peak_lr", "lr_rule"):
        if col in per_run.columns and col not in by:
            cells[col] = g[col].first()
    done = reached.groupby(by, dropna=False)
    cells["steps"] = done["mid"].mean()
    cells["steps_lo"], cells["steps_hi"] = done["steps_lo"].mean(), done["steps_hi"].mean()
    cells = cells.reset_index()
    cells["samples"] = cells["steps"] * cells["global_batch"]
    if "train_time_s" in reached.columns:
        cells = cells.merge(done["train_time_s"].mean().reset_index(), on=by, how="left")
    return cells


def vs_perfect(points: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Per batch: the steps saved from the previous (smaller) batch of its group, as a fraction of
    what perfect scaling would save, (S_prev − S) / (S_prev − S_prev·B_prev/B): 1 is perfect
    scaling, 0 no gain. NaN for a group's first batch and next to a batch without steps."""
    out = pd.Series(np.nan, index=points.index)
    for _, part in points.groupby(keys, dropna=False, sort=False) if keys else [(None, points)]:
        part = part.sort_values("global_batch")
        s, b = part["steps"].to_numpy(float), part["global_batch"].to_numpy(float)
        perfect_saving = s[:-1] * (1 - b[:-1] / b[1:])
        out.loc[part.index[1:]] = (s[:-1] - s[1:]) / perfect_saving
    return out


def fit_runs(runs: pd.DataFrame, n_boot: int = intervals.N_BOOT) -> TradeoffFit:
    """The fit to the runs' interval midpoints (per batch means) with its bootstrap replicates.
    `runs`: global_batch, steps_lo, steps_hi of runs that reached the target."""
    key = tuple(map(tuple, runs[list(intervals.RUN_COLUMNS)].to_numpy(float)))
    return _fit_runs(key, n_boot)


@functools.lru_cache(maxsize=64)  # a report's sections fit the same runs; the bootstrap is the cost
def _fit_runs(key: tuple, n_boot: int) -> TradeoffFit:
    runs = pd.DataFrame(list(key), columns=list(intervals.RUN_COLUMNS))
    points = intervals.midpoints(runs)
    fit = fit_tradeoff(points["global_batch"], points["steps"])
    draws = intervals.bootstrap_draws(runs, fit_tradeoff, n_boot)
    draws.setflags(write=False)  # shared by every caller of the cache
    return replace(fit, draws=draws)


def tradeoff_table(records: pd.DataFrame, target: Target, points: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (task, model, optimizer): the fit over its batches that reached the target.

    Columns: `fit_table`'s, with b_noise_at_target and b_noise_mean (`measured_noise_scale`; NaN
    without a `grad_noise_scale` column). `points`: `steps_to_target(records, target)` where the
    caller has it already.
    """
    points_, runs = best_settings(records, target)
    points = points_ if points is None else points
    keys = [k for k in GROUP_KEYS if k in points.columns]
    table, _ = fit_table(points, runs, keys)
    noise = measured_noise_scale(records, target, keys, runs)
    if not table.empty and not noise.empty:
        table = table.drop(columns=["b_noise_at_target", "b_noise_mean"]).merge(noise, on=keys, how="left")
    return table


FIT_COLUMNS = ("s_min", "s_min_lo", "s_min_hi", "e_min", "e_min_lo", "e_min_hi", "b_crit", "b_crit_lo",
               "b_crit_hi", "n_boot", "rms_rel_error", "r2_log", "n_batches", "batches",
               "b_noise_at_target", "b_noise_mean", "note")


def fit_table(points: pd.DataFrame, runs: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, dict]:
    """(one row per group with a batch that reached the target: `FIT_COLUMNS`, {group tuple:
    TradeoffFit}). `points` as `steps_to_target` gives them; `runs` as `tradeoff_runs`."""
    rows, fits = [], {}
    for key, part in groups_of(points, keys):
        reached = part.dropna(subset=["steps"])
        if reached.empty:
            continue
        row = {**dict(zip(keys, key)), **dict.fromkeys(FIT_COLUMNS, math.nan)}
        row.update(n_batches=len(reached), batches=",".join(f"{b:g}" for b in reached["global_batch"]), n_boot=0)
        group_runs = runs[in_group(runs, keys, key) & runs["reached"].astype(bool)]
        if len(reached) < 2:
            row["note"] = "one batch size reached the target: nothing to fit"
        else:
            fit = fits[key] = fit_runs(group_runs)
            row.update(s_min=fit.s_min, e_min=fit.e_min, b_crit=fit.b_crit, rms_rel_error=fit.rms_rel_error,
                       r2_log=fit.r2_log, **fit.interval_columns())
            row["note"] = "; ".join(filter(None, [_fit_note(fit, len(reached)), *censored_notes(part, fit)]))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, *FIT_COLUMNS]), fits


def groups_of(table: pd.DataFrame, keys: list[str]):
    if not keys:
        yield (), table
        return
    for values, part in table.groupby(keys, sort=True, dropna=False):
        yield (values if isinstance(values, tuple) else (values,)), part


def in_group(table: pd.DataFrame, keys: list[str], key: tuple) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for col, value in zip(keys, key):
        mask &= (table[col] == value) | (table[col].isna() & pd.isna(value))
    return mask


def _fit_note(fit: TradeoffFit, n_batches: int) -> str:
    if n_batches == 2:
        return "two batch sizes: the fit is exact, no goodness of fit"
    if fit.s_min == 0:
        return "steps fell as 1/B at every batch: B_crit lies above the largest batch"
    if fit.e_min == 0:
        return "steps did not fall with batch: B_crit lies below the smallest batch"
    return ""


def censored_notes(points: pd.DataFrame, fit: TradeoffFit) -> list[str]:
    """For each batch no run took to the target: whether the fit agrees that it needs more steps
    than its runs trained (a censored point, not a miss)."""
    if "censored_at" not in points.columns:
        return []
    notes = []
    for _, row in points.dropna(subset=["censored_at"]).iterrows():
        b, bound = float(row["global_batch"]), float(row["censored_at"])
        lo, hi = fit.steps_interval(b)
        verdict = "consistent with the fit" if fit.steps(b) > bound else "the fit expected it to reach the target"
        notes.append(f"batch {b:g} not reached in {bound:g} steps (censored): the fit predicts "
                     f"{float(fit.steps(b)):.4g} steps [{lo[0]:.4g}, {hi[0]:.4g}], {verdict}")
    return notes


def measured_noise_scale(records: pd.DataFrame, target: Target, keys: list[str],
                         runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per group: the median over runs that reached `target` of grad_noise_scale at the first
    evaluation that reached it (`b_noise_at_target`) and of its mean over the evaluations up to
    there (`b_noise_mean`). `runs` (`tradeoff_runs`): only those runs — each batch's best setting,
    the runs the fit rests on. Empty where the records carry no noise scale."""
    if "grad_noise_scale" not in records.columns or records["grad_noise_scale"].isna().all():
        return pd.DataFrame(columns=[*keys, "b_noise_at_target", "b_noise_mean"])
    if runs is not None:
        records = records[records["run"].isin(runs["run"])]
    rows = ordered(records.dropna(subset=[target.metric]))
    met = target.met(rows[target.metric]).astype(int)
    after_hit = met.groupby(rows["run"]).cummax().groupby(rows["run"]).shift(fill_value=0) > 0
    up_to = rows[~after_hit]  # each run's evaluations up to and including its first hit
    first = up_to[target.met(up_to[target.metric])].set_index("run")
    per_run = first[keys].assign(
        b_noise_at_target=first["grad_noise_scale"],
        b_noise_mean=up_to[up_to["run"].isin(first.index)].groupby("run")["grad_noise_scale"].mean())
    return per_run.groupby(keys, dropna=False)[["b_noise_at_target", "b_noise_mean"]].median().reset_index()


def tradeoff_curve(fits: dict, keys: list[str], n_points: int = 60, beyond: float = 4.0) -> pd.DataFrame:
    """The fitted S(B) with its bootstrap band per group, for a chart: log-spaced from the
    smallest measured batch to `beyond` × the largest. Columns: the group keys, global_batch,
    steps, steps_lo, steps_hi, samples and in_range (False: extrapolated)."""
    parts = []
    for key, fit in fits.items():
        grid = np.geomspace(min(fit.batches), max(fit.batches) * beyond, n_points)
        lo, hi = fit.steps_interval(grid)
        parts.append(pd.DataFrame({**{k: v for k, v in zip(keys, key)}, "global_batch": grid,
                                   "steps": fit.steps(grid), "steps_lo": lo, "steps_hi": hi,
                                   "samples": fit.samples(grid), "in_range": fit.in_range(grid)}))
    columns = [*keys, "global_batch", "steps", "steps_lo", "steps_hi", "samples", "in_range"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
