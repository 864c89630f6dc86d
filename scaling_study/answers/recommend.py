"""The answer to "for N GPUs, which optimizer, batch size and learning rate, and how long to the
target?": one recommendation per worker count, with its basis.

- **measured**: some run at N workers reached the target; the recommendation is the fastest of
  them (least train time to the target, `results.targets.time_to_target`), as it ran.
- **projected**: no run at N reached it. For each optimizer with a tradeoff fit (`tradeoff.py`),
  every global batch B = N × per-worker batch × k (k the accumulation) inside the fit's measured
  batch range is scored as S(B) × projected step time (`projection.py`); the least time wins.
  Its peak LR is the best LR of the nearest measured batch, moved to B by the LR rule that the
  sweep's best LRs follow (`lr_rule_of_sweep`).
- **none**: neither is possible; `detail` says why.

References: McCandlish et al. 2018 (the tradeoff S(B)); You et al. 2019 (LAMB: the √ rule);
Goyal et al. 2017 (the linear rule).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling_study.answers.checks import profile_from_records
from scaling_study.answers.links import ALGORITHMS, DEFAULT_ALGORITHM, Cluster
from scaling_study.answers.projection import project, with_time_to_target
from scaling_study.answers.tradeoff import (
    GROUP_KEYS, TradeoffFit, setting_columns, steps_to_target, tradeoff_table,
)
from scaling_study.errors import UserError
from scaling_study.optim.scaling import scale_lr
from scaling_study.results.targets import Target, time_to_target

# `run`: the run a measured row is, or the run whose job a projected row starts from (the fastest
# of the best setting at the nearest measured batch: its other hyperparameters come along).
COLUMNS = ("num_workers", "basis", "optimizer", "global_batch", "per_worker_batch", "grad_accum",
           "peak_lr", "lr_rule", "steps_to_target", "time_to_target_s", "run", "detail")
# The exponent p of lr ∝ B^p that each rule stands for.
_RULE_EXPONENT = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}


@dataclass(frozen=True)
class Plan:
    """How to project where nothing was measured: the cluster and what a step all-reduces."""

    cluster: Cluster
    grad_bytes: float
    algorithm: str = DEFAULT_ALGORITHM
    overlap: float = 0.0
    accums: tuple[int, ...] = (1, 2, 4, 8)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise UserError(f"--algorithm {self.algorithm!r}: valid algorithms are {', '.join(ALGORITHMS)}")


def recommend(records: pd.DataFrame, target: Target, workers, plan: Plan | None = None) -> pd.DataFrame:
    """One row per worker count in `workers` (columns `COLUMNS`; module docstring for the rules)."""
    reached = time_to_target(records, target)
    reached = reached[reached["reached"]]
    fits = _fits(records, target, plan) if plan is not None else {}
    rows = []
    for n in sorted(set(int(n) for n in workers)):
        at_n = reached[reached["num_workers"] == n] if "num_workers" in reached.columns else reached.iloc[:0]
        if not at_n.empty:
            rows.append(_measured(n, at_n))
        elif plan is None:
            rows.append(_none(n, f"no run at {n} workers reached {target}, and no plan (cluster, "
                                   "gradient bytes) to project with"))
        else:
            rows.append(_projected(n, fits, plan, target, reached))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _measured(n: int, runs: pd.DataFrame) -> dict:
    best = runs.sort_values("train_time_s", kind="stable").iloc[0]
    return {"num_workers": n, "basis": "measured", "optimizer": best.get("optimizer", ""),
            "global_batch": best.get("global_batch"), "per_worker_batch": best.get("per_worker_batch"),
            "grad_accum": best.get("grad_accum"), "peak_lr": best.get("peak_lr"),
            "lr_rule": best.get("lr_rule", ""), "steps_to_target": best.get("step"),
            "time_to_target_s": best["train_time_s"], "detail": f"run {best['run']}", "run": best["run"]}


def _none(n: int, why: str) -> dict:
    return {**dict.fromkeys(COLUMNS, math.nan), "num_workers": n, "basis": "none", "detail": why, "run": ""}


def _fits(records: pd.DataFrame, target: Target, plan: Plan) -> dict[str, tuple]:
    """Per optimizer: its tradeoff fit, its best settings by batch (first group if several) and
    its measured profile, or why it has none (its runs lack the step timings)."""
    best = steps_to_target(records, target)
    table = tradeoff_table(records, target, best)
    out = {}
    for _, row in table.dropna(subset=["s_min"]).iterrows():
        optimizer = row["optimizer"]
        if optimizer in out:
            continue
        settings = best[(best["optimizer"] == optimizer) & best["steps"].notna()]
        try:
            profile = profile_from_records(records, plan.grad_bytes, optimizer, plan.overlap)
        except UserError as exc:
            profile = str(exc)
        out[optimizer] = (TradeoffFit.from_row(row), settings, profile)
    return out


def _projected(n: int, fits: dict, plan: Plan, target: Target, reached: pd.DataFrame) -> dict:
    candidates, why, projected = [], [], False
    for optimizer, (fit, settings, profile) in fits.items():
        if isinstance(profile, str):  # why this optimizer's runs give no profile
            why.append(f"{optimizer}: {profile}")
            continue
        try:
            table = project(profile, plan.cluster, plan.algorithm, workers=(n,), accums=plan.accums)
        except UserError as exc:  # more GPUs than one node, and the cluster has no network
            why.append(f"{optimizer}: {exc}")
            continue
        projected = True
        table = with_time_to_target(table, fit).dropna(subset=["time_to_target_s"])
        if not table.empty:
            candidates.append((optimizer, settings, profile, table.nsmallest(1, "time_to_target_s").iloc[0]))
    if not candidates:
        if projected or not why:
            why.append(f"no optimizer's measured batch range holds a batch of {n} workers "
                       f"(per-worker batch × accumulation {plan.accums}) that reached {target}")
        return _none(n, "; ".join(why))
    optimizer, settings, profile, best = min(candidates, key=lambda c: c[3]["time_to_target_s"])
    batch = int(best["global_batch"])
    lr, rule = lr_at(settings, batch)
    return {"num_workers": n, "basis": "projected", "optimizer": optimizer, "global_batch": batch,
            "per_worker_batch": profile.per_worker_batch, "grad_accum": int(best["grad_accum"]),
            "peak_lr": lr, "lr_rule": rule, "steps_to_target": best["steps_to_target"],
            "time_to_target_s": best["time_to_target_s"],
            "detail": f"S(B) from the {optimizer} tradeoff fit; step {best['step_time_s']:.4g} s on "
                      f"{plan.cluster}, {plan.algorithm} all-reduce",
            "run": source_run(reached, nearest_setting(settings, batch))}


def lr_rule_of_sweep(batches, lrs) -> str:
    """The rule (none, sqrt, linear) whose exponent is nearest the slope of log(best LR) on
    log(batch); "none" with fewer than two batches."""
    b, lr = np.asarray(batches, dtype=float), np.asarray(lrs, dtype=float)
    keep = np.isfinite(lr) & (lr > 0)
    if len(np.unique(b[keep])) < 2:
        return "none"
    slope = np.polyfit(np.log(b[keep]), np.log(lr[keep]), 1)[0]
    return min(_RULE_EXPONENT, key=lambda rule: abs(_RULE_EXPONENT[rule] - slope))


def lr_at(settings: pd.DataFrame, batch: int) -> tuple[float, str]:
    """(peak LR at `batch`, the rule that moved it there): the best peak LR of the measured batch
    nearest on a log scale, scaled by `lr_rule_of_sweep` ("measured" where `batch` was run)."""
    lr_col = _lr_column(settings)
    rows = settings.dropna(subset=[lr_col])
    if rows.empty:
        return math.nan, ""
    nearest = nearest_setting(rows, batch)
    if int(nearest["global_batch"]) == batch:
        return float(nearest[lr_col]), "measured"
    rule = lr_rule_of_sweep(rows["global_batch"], rows[lr_col])
    return scale_lr(float(nearest[lr_col]), int(nearest["global_batch"]), batch, rule), rule


def _lr_column(settings: pd.DataFrame) -> str:
    return "peak_lr" if "peak_lr" in settings.columns and settings["peak_lr"].notna().any() else "lr"


def nearest_setting(settings: pd.DataFrame, batch: int) -> pd.Series:
    """The row of `settings` (best settings by batch, with an LR) whose batch is nearest `batch`
    on a log scale: where a projected batch takes its LR and its other hyperparameters from."""
    rows = settings.dropna(subset=[_lr_column(settings)])
    return rows.iloc[int(np.argmin(np.abs(np.log(rows["global_batch"].to_numpy(float) / batch))))]


def source_run(reached: pd.DataFrame, setting: pd.Series) -> str:
    """The fastest run (least train time to the target) of `setting`, a `steps_to_target` row:
    same task, model, optimizer and batch, the same LR and other swept values; "" if none."""
    rows = reached
    for col in [*(k for k in GROUP_KEYS if k in setting.index), "global_batch", *setting_columns(reached)]:
        if col not in rows.columns:
            continue
        value = setting["lr"] if col == setting.get("lr_column") else setting.get(col)
        rows = rows[(rows[col] == value) | (rows[col].isna() & pd.isna(value))]
    return str(rows.sort_values("train_time_s", kind="stable").iloc[0]["run"]) if len(rows) else ""


def job_overrides(row: pd.Series) -> dict[str, object]:
    """Dotted job keys that make a job run `row`'s recommendation (for `export --workers N`).

    The LR is given as the peak itself with `schedule.lr_rule: none`, so no rule moves it again.
    """
    if row["basis"] == "none":
        raise UserError(f"no recommendation for {row['num_workers']} workers: {row['detail']}")
    return {"scaling.num_workers": int(row["num_workers"]), "optimizer.name": row["optimizer"],
            "optimizer.lr": float(row["peak_lr"]), "schedule.lr_rule": "none",
            "schedule.reference_batch": None, "train.per_worker_batch": int(row["per_worker_batch"]),
            "train.grad_accum": int(row["grad_accum"]), "train.global_batch": int(row["global_batch"])}
