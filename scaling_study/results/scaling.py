"""Scaling figures over the records: throughput, weak- and strong-scaling efficiency, speedup.

Definitions (the dashboard states the same text, from `DEFINITIONS`):

- Runs are grouped by what a scaling study holds fixed; within a group, runs at the same worker
  count N (seeds, or sweep points that differ only in LR, which does not change throughput) are
  repeats, summarised by their mean, min and max.
- The baseline N0 is N = 1 where the group has it, else its smallest N (the table's
  `baseline_workers` column says which, and the dashboard notes every group where N0 > 1).
- Weak scaling (fixed per-worker batch, so the global batch grows with N): group by task, model,
  optimizer, device, LR rule, per-worker batch and accumulation steps. Efficiency
  E(N) = throughput(N) / ((N / N0) * throughput(N0)); with N0 = 1 that is the seeds'
  throughput(N) / (N * throughput(1)). Throughput is the steady-state rate of `runs.py`.
- Strong scaling (fixed global batch): group by task, model, optimizer, device, LR rule, global
  batch and peak LR. T(N) is the train time to a fixed amount of work: the number of samples S
  every run of the group reached (the smallest final `samples` among them), read off each run's
  (samples, train_time_s) curve by linear interpolation from (0, 0). When all runs train the same
  number of samples, T is simply their total train time. Speedup S(N) = T(N0) / T(N); efficiency
  T(N0) * N0 / (N * T(N)), i.e. T(1) / (N * T(N)) with N0 = 1.
- Centre values come from the mean over repeats; the min/max columns apply the same formula to
  the fastest and slowest repeat against the baseline's mean.
- Runs whose `scaling_mode` names the other kind of study are left out; runs with no mode count
  for both. An elastic run that changed its worker count counts in weak scaling segment by
  segment, and not in strong scaling (`results.segments`). Groups that span a single worker count have nothing to compare and are dropped.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from scaling_study.results.records import Needs, ordered
from scaling_study.results.runs import THROUGHPUT_INPUTS, run_config, steady_throughput
from scaling_study.results.segments import resized_runs, split_resized

WEAK_KEYS = ("task", "model", "optimizer", "device", "lr_rule", "per_worker_batch", "grad_accum")
STRONG_KEYS = ("task", "model", "optimizer", "device", "lr_rule", "global_batch", "peak_lr")

WEAK_SCALING = Needs("weak-scaling efficiency", ("num_workers", "per_worker_batch"), THROUGHPUT_INPUTS)
STRONG_SCALING = Needs(
    "strong-scaling efficiency", ("num_workers", "global_batch", "samples", "train_time_s")
)

DEFINITIONS = {
    "weak": (
        "Weak scaling: per-worker batch fixed, global batch grows with N. Efficiency "
        "E(N) = throughput(N) / ((N/N0) × throughput(N0)), i.e. throughput(N) / (N × throughput(1)) "
        "when N0 = 1. Throughput is steady-state: samples trained after the first evaluation divided "
        "by the train time they took (evaluation excluded); a run with one evaluation uses "
        "samples / train time. Grouped by task, model, optimizer, device, LR rule, per-worker batch "
        "and accumulation steps."
    ),
    "strong": (
        "Strong scaling: global batch fixed. T(N) is the train time to the number of samples every "
        "run of the group reached (the total train time when all ran the same samples), interpolated "
        "on each run's samples/train-time curve. Speedup S(N) = T(N0)/T(N); efficiency "
        "T(N0) × N0 / (N × T(N)), i.e. T(1) / (N × T(N)) when N0 = 1. Grouped by task, model, "
        "optimizer, device, LR rule, global batch and peak LR."
    ),
    "baseline": (
        "Baseline N0 is N = 1 where a group has it, else the group's smallest worker count. "
        "Lines are means over repeats (seeds); error bars span the fastest and slowest repeat."
    ),
}


def present(df: pd.DataFrame, keys: tuple[str, ...]) -> list[str]:
    """The grouping keys that `df` has."""
    return [k for k in keys if k in df.columns]


def in_mode(df: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Rows of runs labelled with scaling `mode` or with no mode (all rows if no such column)."""
    if "scaling_mode" not in df.columns:
        return df
    return df[df["scaling_mode"].isin([mode, ""])]


def scale_cells(per_run: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Summarise `value` per (group, num_workers) and attach each group's baseline.

    `per_run` holds one row per run with `keys`, `num_workers` and `value` (NaN where the run has
    none, e.g. a target it never reached). Returns keys, num_workers, n_runs, n_<value> (runs with
    a value), <value>_mean/_min/_max, baseline_workers and baseline_<value> (the mean at N0),
    sorted by group and N. Groups with a single worker count are dropped.
    """
    per_run = per_run.assign(group=_group_ids(per_run, keys))
    by = ["group", *keys, "num_workers"]
    g = per_run.groupby(by, dropna=False, sort=True)[value]
    cells = g.agg(["size", "count", "mean", "min", "max"]).reset_index()
    cells.columns = [*by, "n_runs", f"n_{value}", f"{value}_mean", f"{value}_min", f"{value}_max"]
    spans = cells.groupby("group")["num_workers"].transform("nunique")
    cells = cells[spans > 1].reset_index(drop=True)
    base = cells.loc[cells.groupby("group")["num_workers"].idxmin()].set_index("group")
    cells["baseline_workers"] = cells["group"].map(base["num_workers"])
    cells[f"baseline_{value}"] = cells["group"].map(base[f"{value}_mean"])
    return cells.drop(columns="group")


def _group_ids(df: pd.DataFrame, keys: list[str]) -> np.ndarray:
    if not keys:
        return np.zeros(len(df), dtype=int)
    return df.groupby(keys, dropna=False, sort=True).ngroup().to_numpy()


def weak_scaling(records: pd.DataFrame) -> pd.DataFrame:
    """Throughput and weak-scaling efficiency per worker count (see the module docstring).

    Columns: the weak-scaling keys present, num_workers, n_runs, throughput_mean/_min/_max,
    baseline_workers, baseline_throughput, ideal_throughput ((N/N0) × baseline), speedup
    (throughput / baseline) and efficiency/_min/_max (fractions; 1.0 is ideal).
    """
    WEAK_SCALING.check(records)
    # An elastic run's segments count as runs on their own worker counts (`results.segments`).
    records = split_resized(in_mode(records, "weak").dropna(subset=["num_workers"]))
    keys = present(records, WEAK_KEYS)
    per_run = run_config(records).set_index("run")[[*keys, "num_workers"]]
    per_run["throughput"] = steady_throughput(records)
    cells = scale_cells(per_run.reset_index(drop=True), keys, "throughput")
    scale = cells["baseline_workers"] / cells["num_workers"] / cells["baseline_throughput"]
    cells["ideal_throughput"] = cells["baseline_throughput"] / cells["baseline_workers"] * cells["num_workers"]
    cells["speedup"] = cells["throughput_mean"] / cells["baseline_throughput"]
    for stat in ("mean", "min", "max"):
        name = "efficiency" if stat == "mean" else f"efficiency_{stat}"
        cells[name] = cells[f"throughput_{stat}"] * scale
    return cells


def train_time_at(records: pd.DataFrame, samples: pd.Series) -> pd.Series:
    """Train time at which each run (index of `samples`) had seen `samples[run]` samples.

    Linear interpolation on the run's (samples, train_time_s) evaluations, starting from (0, 0);
    NaN where the run never got that far.
    """
    rows = ordered(records.dropna(subset=["samples", "train_time_s"]))
    out = {}
    for run, curve in rows.groupby("run", sort=False):
        if run not in samples.index:
            continue
        xs = np.concatenate([[0.0], curve["samples"].to_numpy()])
        ts = np.concatenate([[0.0], curve["train_time_s"].to_numpy()])
        target = samples[run]
        out[run] = float(np.interp(target, xs, ts)) if target <= xs[-1] else np.nan
    return pd.Series(out, name="train_time_s", dtype=float).reindex(samples.index)


def strong_scaling(records: pd.DataFrame) -> pd.DataFrame:
    """Train time to a fixed amount of work, speedup and strong-scaling efficiency per N.

    Columns: the strong-scaling keys present, samples (the fixed work S), num_workers, n_runs,
    train_time_s_mean/_min/_max, baseline_workers, baseline_train_time_s, speedup/_min/_max and
    efficiency/_min/_max (fractions; 1.0 is ideal).
    """
    STRONG_SCALING.check(records)
    records = in_mode(records, "strong").dropna(subset=["num_workers", "global_batch"])
    records = records[~records["run"].isin(resized_runs(records))]  # no fixed work for a segment
    keys = present(records, STRONG_KEYS)
    per_run = run_config(records).set_index("run")[[*keys, "num_workers"]]
    final = records.groupby("run")["samples"].max()
    group = pd.Series(_group_ids(per_run, keys), index=per_run.index)
    per_run["samples"] = final.groupby(group).transform("min").reindex(per_run.index)
    per_run["train_time_s"] = train_time_at(records, per_run["samples"])
    cells = scale_cells(per_run.reset_index(drop=True), [*keys, "samples"], "train_time_s")
    base = cells["baseline_train_time_s"]
    ratio = cells["baseline_workers"] / cells["num_workers"]
    # The slowest repeat gives the smallest speedup: min pairs with max time.
    for suffix, stat in (("", "mean"), ("_min", "max"), ("_max", "min")):
        cells[f"speedup{suffix}"] = base / cells[f"train_time_s_{stat}"]
        cells[f"efficiency{suffix}"] = cells[f"speedup{suffix}"] * ratio
    return cells


def baseline_notes(table: pd.DataFrame, keys: tuple[str, ...], figure: str) -> list[str]:
    """One note per group of `table` whose baseline is not N = 1, naming the group."""
    if table.empty:
        return []
    cols = present(table, keys) + [c for c in ("samples",) if c in table.columns]
    groups = table.drop_duplicates(cols + ["baseline_workers"])
    notes = []
    for _, row in groups[groups["baseline_workers"] != 1].iterrows():
        label = describe_group(row, cols)
        notes.append(f"{figure}: no N = 1 run for {label}; baseline is N0 = {row['baseline_workers']:g}")
    return notes


def describe_group(row: pd.Series, keys: list[str]) -> str:
    """A short "key=value, ..." label for one group, leaving out empty values."""
    parts = [f"{k}={_fmt(row[k])}" for k in keys if k in row.index and _fmt(row[k]) != ""]
    return ", ".join(parts) or "all runs"


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:g}"
    return str(value)
