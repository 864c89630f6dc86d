"""Is the tradeoff fit a prediction? Fit on the smaller batches, predict the larger ones.

Per group with at least `MIN_FIT_BATCHES` + 1 batches that reached the target, the largest
batches are held out — a third of them, at least one, leaving at least `MIN_FIT_BATCHES` to
fit — and the fit to the others (with its bootstrap interval, `intervals.py`) predicts their
steps. A batch that no run took to the target (censored: it needs more than `censored_at`
steps) is predicted too, and the prediction is checked against that bound.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scaling_study.answers.tradeoff import groups_of, in_group, fit_runs

MIN_FIT_BATCHES = 3
COLUMNS = ("global_batch", "kind", "fit_batches", "measured_steps", "measured_lo", "measured_hi",
           "censored_at", "predicted_steps", "predicted_lo", "predicted_hi", "rel_error", "within_interval")


def tradeoff_holdout(points: pd.DataFrame, runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per held-out or censored batch (columns: the group keys, then `COLUMNS`).

    kind: "held out" (measured steps known; rel_error = predicted/measured − 1; within_interval:
    the measured steps lie inside the predicted interval) or "censored" (rel_error NaN;
    within_interval: the prediction exceeds the steps the runs trained). `points` and `runs` as
    `tradeoff.steps_to_target` and `tradeoff.tradeoff_runs` give them.
    """
    rows = []
    for key, part in groups_of(points, keys):
        reached = part.dropna(subset=["steps"]).sort_values("global_batch")
        n_out = max(1, len(reached) // 3)
        if len(reached) - n_out < MIN_FIT_BATCHES:
            continue
        fit_batches = reached["global_batch"].iloc[:-n_out]
        group_runs = runs[in_group(runs, keys, key) & runs["reached"].astype(bool)]
        fit = fit_runs(group_runs[group_runs["global_batch"].isin(fit_batches)])
        label = ",".join(f"{b:g}" for b in fit_batches)
        held = reached.iloc[-n_out:]
        censored = part.dropna(subset=["censored_at"]) if "censored_at" in part.columns else part.iloc[:0]
        for _, row in pd.concat([held, censored]).iterrows():
            rows.append({**dict(zip(keys, key)), **_predict(fit, row, label)})
    return pd.DataFrame(rows, columns=[*keys, *COLUMNS])


def _predict(fit, row: pd.Series, fit_batches: str) -> dict:
    b = float(row["global_batch"])
    predicted = float(fit.steps(b))
    lo, hi = (float(v[0]) for v in fit.steps_interval(b))
    out = {"global_batch": b, "fit_batches": fit_batches, "predicted_steps": predicted,
           "predicted_lo": lo, "predicted_hi": hi, "censored_at": row.get("censored_at", math.nan)}
    if pd.notna(row.get("steps")):
        measured = float(row["steps"])
        out.update(kind="held out", measured_steps=measured, measured_lo=row["steps_lo"],
                   measured_hi=row["steps_hi"], rel_error=predicted / measured - 1.0,
                   within_interval=bool(lo <= measured <= hi))
    else:
        out.update(kind="censored", measured_steps=np.nan, measured_lo=np.nan, measured_hi=np.nan,
                   rel_error=np.nan, within_interval=bool(predicted > float(row["censored_at"])))
    return out
