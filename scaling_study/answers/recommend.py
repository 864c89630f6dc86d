"""The answer to "for N GPUs, which optimizer, batch size and learning rate, and how long to the
target?": one recommendation per worker count, with its basis.

- **measured**: some run at N workers reached the target; the recommendation is the fastest of
  them (least train time to the target, `results.targets.time_to_target`), as it ran.
- **projected**: no run at N reached it. For each optimizer with a tradeoff fit (`tradeoff.py`),
  every global batch B = N × per-worker batch × k (k the accumulation; per-worker batches from the
  profile's down to 1) inside the fit's measured batch range is scored as S(B) × projected step
  time (`projection.py`, on the plan's device: `checks.profile_for`); the least time wins. Its
  peak LR is the best LR of the nearest measured batch, moved to B by the LR rule that the
  sweep's best LRs follow (`lr_rule_of_sweep`).
- **extrapolated**: as projected, where no batch of N workers lies inside the measured range:
  at N's smallest batch (per-worker batch 1, no accumulation: the nearest to what was measured),
  S(B) from the fit beyond its range, bounded below by S_min steps and E_min samples (the detail
  says so), with its bootstrap interval.
- **none**: neither is possible; `detail` says why and what would give one.

Every row carries an interval: steps_lo/steps_hi and time_lo_s/time_hi_s (a measured run: the
crossing lies between its last evaluation below the target and its first at it; projected and
extrapolated: the bootstrap interval of S(B), `intervals.py`).

References: McCandlish et al. 2018 (the tradeoff S(B)); You et al. 2019 (LAMB: the √ rule);
Goyal et al. 2017 (the linear rule).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling_study.answers.checks import profile_for
from scaling_study.answers.links import ALGORITHMS, DEFAULT_ALGORITHM, Cluster
from scaling_study.answers.projection import project, with_time_to_target
from scaling_study.answers.tradeoff import GROUP_KEYS, best_settings, fit_table, setting_columns
from scaling_study.errors import UserError
from scaling_study.optim.scaling import scale_lr
from scaling_study.results.targets import Target, time_to_target

# `run`: the run a measured row is, or the run whose job a projected row starts from (the fastest
# of the best setting at the nearest measured batch: its other hyperparameters come along).
COLUMNS = ("num_workers", "basis", "optimizer", "global_batch", "per_worker_batch", "grad_accum",
           "peak_lr", "lr_rule", "steps_to_target", "steps_lo", "steps_hi", "time_to_target_s", "time_lo_s",
           "time_hi_s", "device", "run", "detail")
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
    device: object = None
    """A device profile (`device.NamedDevice` or `device.MeasuredDevice`); None: the records' own
    timings, which must then come from GPUs (`checks.require_gpu_records`)."""
    model_config: dict | None = None
    """The records' model's BertConfig values (a named device profile counts its FLOPs)."""

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
    step, before = best.get("step"), best.get("step_before", best.get("step"))
    share = before / step if step and pd.notna(before) else 1.0  # train time at the last evaluation below
    return {"num_workers": n, "basis": "measured", "optimizer": best.get("optimizer", ""),
            "global_batch": best.get("global_batch"), "per_worker_batch": best.get("per_worker_batch"),
            "grad_accum": best.get("grad_accum"), "peak_lr": best.get("peak_lr"),
            "lr_rule": best.get("lr_rule", ""), "steps_to_target": step, "steps_lo": before, "steps_hi": step,
            "time_to_target_s": best["train_time_s"], "time_lo_s": best["train_time_s"] * share,
            "time_hi_s": best["train_time_s"], "device": best.get("device", ""),
            "detail": f"run {best['run']}", "run": best["run"]}


def _none(n: int, why: str) -> dict:
    return {**dict.fromkeys(COLUMNS, math.nan), "num_workers": n, "basis": "none", "detail": why, "run": "",
            "device": ""}


def _fits(records: pd.DataFrame, target: Target, plan: Plan) -> dict[str, tuple]:
    """Per optimizer: its tradeoff fit, its best settings by batch (first group if several) and
    its profile on the plan's device, or why it has none."""
    best, runs = best_settings(records, target)
    keys = [k for k in GROUP_KEYS if k in best.columns]
    _, fits = fit_table(best, runs, keys)
    out = {}
    for key, fit in fits.items():
        optimizer = dict(zip(keys, key)).get("optimizer", "")
        if optimizer in out:
            continue
        settings = best[(best["optimizer"] == optimizer) & best["steps"].notna()]
        try:
            profile = profile_for(records, plan, optimizer)
        except UserError as exc:
            profile = str(exc)
        out[optimizer] = (fit, settings, profile)
    return out


def _candidates(n: int, fits: dict, plan: Plan) -> tuple[list, list[str]]:
    """(optimizer, settings, profile, fit, best row of the projection at n), and why others have none."""
    found, why = [], []
    for optimizer, (fit, settings, profile) in fits.items():
        if isinstance(profile, str):  # why this optimizer's runs give no profile on this device
            why.append(f"{optimizer}: {profile}")
            continue
        try:
            table = project(profile, plan.cluster, plan.algorithm, workers=(n,), accums=plan.accums,
                            per_worker_batches=profile.per_worker_batches())
        except UserError as exc:  # more GPUs than one node, and the cluster has no network
            why.append(f"{optimizer}: {exc}")
            continue
        table = with_time_to_target(table, fit, extrapolate=True)
        inside = table[table["in_range"]]
        # Beyond the measured batches, the nearest: N workers' smallest batch (the fit says larger
        # ones save at most S(B) − S_min steps, and trusts it less the farther it goes).
        pick = inside.nsmallest(1, "time_to_target_s").iloc[0] if not inside.empty else \
            table.sort_values(["global_batch", "time_to_target_s"], kind="stable").iloc[0]
        found.append((optimizer, settings, profile, fit, pick))
    return found, why


def _projected(n: int, fits: dict, plan: Plan, target: Target, reached: pd.DataFrame) -> dict:
    candidates, why = _candidates(n, fits, plan)
    if not candidates:
        if not why:
            why.append(f"no optimizer reached {target} at two batch sizes, so there is no fit of steps against "
                       "batch: run two or more batches (e.g. 2× apart) to the target")
        return _none(n, "; ".join(why))
    # Inside a measured batch range before beyond it; then the least time.
    optimizer, settings, profile, fit, best = min(
        candidates, key=lambda c: (not c[4]["in_range"], c[4]["time_to_target_s"]))
    batch = int(best["global_batch"])
    lr, rule = lr_at(settings, batch)
    basis = "projected" if best["in_range"] else "extrapolated"
    detail = (f"S(B) from the {optimizer} tradeoff fit; step {best['step_time_s']:.4g} s on {plan.cluster}, "
              f"{plan.algorithm} all-reduce, compute from {profile.device}")
    if basis == "extrapolated":
        detail = (f"S(B) extrapolated beyond the measured batches ({min(fit.batches):g}–{max(fit.batches):g}): "
                  f"at least S_min = {fit.s_min:.4g} steps and E_min = {fit.e_min:.4g} samples "
                  f"(here {best['samples_to_target']:.4g}); " + detail)
    return {"num_workers": n, "basis": basis, "optimizer": optimizer, "global_batch": batch,
            "per_worker_batch": int(best["per_worker_batch"]), "grad_accum": int(best["grad_accum"]),
            "peak_lr": lr, "lr_rule": rule, **{c: best[c] for c in ("steps_to_target", "steps_lo", "steps_hi",
                                                                    "time_to_target_s", "time_lo_s", "time_hi_s")},
            "device": profile.device, "detail": detail, "run": source_run(reached, nearest_setting(settings, batch))}


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
