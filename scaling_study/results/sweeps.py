"""Sweep figures over the records: learning curves, the LR × batch grid, ASHA trial lifetimes,
and the table of trials.

Definitions (the dashboard states them from `DEFINITIONS`):

- The metric a report plots is the target's metric where a target is set, else F1 where any run
  records it, else MLM accuracy, else EM.
- A run's final metric is its value at the run's last evaluation that has one, so a trial that
  ASHA stopped early shows the metric it had when stopped.
- The LR × batch grid is drawn over `global_batch` and the LR the sweep chose
  (`hp.optimizer.lr`, before any scaling rule) where the records have it, else `peak_lr` (the LR
  after the rule, the one the optimizer ran with); a cell is the mean over its runs (seeds).
- Trial lifetimes are the samples each trial trained. They come from `trials.csv` where a sweep
  directory has one (with its `stopped_early` flag); otherwise from the records, where a trial
  counts as stopped early when it trained fewer samples than the longest trial of its sweep.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from scaling_study.contract import HP_PREFIX, METRICS, PRIMARY_METRIC
from scaling_study.errors import UserError
from scaling_study.layout import TRIALS_FILE
from scaling_study.results.records import Needs, ordered
from scaling_study.results.runs import run_summary

# The metrics a report may plot, in order of preference: each task's primary, then the other
# bounded scores (losses are plotted only as a target's metric).
PLOTTED_METRICS = (*PRIMARY_METRIC.values(),
                   *(m.name for m in METRICS.values() if m.scale and m.name not in PRIMARY_METRIC.values()))
SWEPT_LR = HP_PREFIX + "optimizer.lr"

DEFINITIONS = {
    "curves": "The metric at each evaluation against the run's train time (evaluation excluded).",
    "grid": (
        "Final metric (at each run's last evaluation; early-stopped trials show their value when "
        "stopped) over LR × global batch, one heatmap per optimizer; a cell is the mean over its "
        "runs. The LR is the swept one (hp.optimizer.lr, before the scaling rule) in a sweep, else "
        "peak_lr (after it)."
    ),
    "lifetimes": (
        "Samples each trial trained. From trials.csv where present; otherwise from the records, "
        "counting a trial as stopped early when it trained fewer samples than the longest trial "
        "of its sweep."
    ),
    "trials": "One row per run or trial, with its configuration, progress, throughput and metric.",
}
TRIAL_LIFETIMES = Needs("trial lifetimes", ("trial_id", "samples"))


def primary_metric(records: pd.DataFrame, target_metric: str | None = None) -> str:
    """The metric to plot (see the module docstring); UserError if the records hold none."""
    if target_metric:
        return target_metric
    for metric in PLOTTED_METRICS:
        if metric in records.columns and records[metric].notna().any():
            return metric
    sources = ", ".join(records["source"].unique()) if "source" in records.columns else "records"
    raise UserError(f"{sources}: no metric to plot: no values in any of {', '.join(PLOTTED_METRICS)}")


def metric_curves(records: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The tidy learning curves: run, train_time_s (wall_time_s, samples, step where recorded) and
    `metric`, one row per evaluation that has the metric, in training order."""
    Needs(f"{metric} vs train time", (metric, "train_time_s")).check(records)
    cols = ["run", *[c for c in ("optimizer", "num_workers", "global_batch", "peak_lr") if c in records.columns],
            *[c for c in ("step", "samples", "train_time_s", "wall_time_s") if c in records.columns], metric]
    return ordered(records.dropna(subset=[metric, "train_time_s"]))[cols].reset_index(drop=True)


def grid_lr_column(records: pd.DataFrame) -> str:
    """The LR axis of the grid: the swept LR (`hp.optimizer.lr`) in a sweep, else `peak_lr`."""
    if SWEPT_LR in records.columns and records[SWEPT_LR].notna().any():
        return SWEPT_LR
    return "peak_lr"


def final_metric_grid(records: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean final `metric` per optimizer × global batch × LR.

    Columns: optimizer, global_batch, lr, lr_column (which column `lr` holds, see
    `grid_lr_column`), final_<metric> (mean over runs) and n_runs.
    """
    Needs(f"final {metric} over LR × batch", ("optimizer", "global_batch", metric),
          ((SWEPT_LR,), ("peak_lr",))).check(records)
    lr = grid_lr_column(records)
    summary = run_summary(records, metric).dropna(subset=[f"final_{metric}", "global_batch", lr])
    keys = ["optimizer", "global_batch", lr]
    grid = summary.groupby(keys, sort=True)[f"final_{metric}"].agg(["mean", "size"]).reset_index()
    grid = grid.rename(columns={lr: "lr", "mean": f"final_{metric}", "size": "n_runs"})
    grid.insert(3, "lr_column", lr)
    return grid


def trial_lifetimes(records: pd.DataFrame, trials: pd.DataFrame | None = None) -> pd.DataFrame:
    """Samples trained per trial and whether ASHA stopped it early.

    Columns: source, trial_id, samples, stopped_early, status ("" when unknown) and basis
    ("trials.csv" or "records (inferred)"), longest first.
    """
    if trials is not None and {"trial_id", "samples", "stopped_early"} <= set(trials.columns):
        table = trials[["source", "trial_id", "samples", "stopped_early"]].copy()
        table["status"] = trials["status"] if "status" in trials.columns else ""
        table["basis"] = TRIALS_FILE
    else:
        table = _lifetimes_from_records(records)
    return table.sort_values(["samples", "trial_id"], ascending=[False, True]).reset_index(drop=True)


def _lifetimes_from_records(records: pd.DataFrame) -> pd.DataFrame:
    TRIAL_LIFETIMES.check(records)
    rows = records[records["trial_id"] != ""]
    if rows.empty:
        raise UserError(f"{', '.join(records['source'].unique())}: trial lifetimes need a sweep (no trial_id is set)")
    table = rows.groupby(["source", "trial_id"], sort=False)["samples"].max().reset_index()
    longest = table.groupby("source")["samples"].transform("max")
    table["stopped_early"] = table["samples"] < longest
    table["status"] = ""
    table["basis"] = "records (inferred)"
    return table


def trials_table(records: pd.DataFrame, trials: pd.DataFrame | None, metric: str | None) -> pd.DataFrame:
    """The table of trials: `run_summary` per run, with status and stopped_early from trials.csv
    joined in by (source directory, trial_id) where a sweep directory provides them."""
    table = run_summary(records, metric)
    if trials is None or "trial_id" not in table.columns:
        return table
    extra = [c for c in ("status", "stopped_early") if c in trials.columns]
    if not extra:
        return table
    joined = trials[["source", "trial_id", *extra]].assign(folder=_folder(trials["source"]))
    table = table.assign(folder=_folder(table["source"]))
    table = table.merge(joined.drop(columns="source"), on=["folder", "trial_id"], how="left")
    return table.drop(columns="folder")


def _folder(sources: pd.Series) -> pd.Series:
    """The directory of each source file: records.csv and trials.csv of a sweep share it."""
    return sources.map(lambda s: str(Path(s).parent))
