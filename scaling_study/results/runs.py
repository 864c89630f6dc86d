"""Per-run summaries: one row per run out of its evaluation rows.

Which throughput represents a run
---------------------------------
A run's throughput is its *steady-state* rate: the samples trained after its first evaluation
divided by the train time they took, (samples_last - samples_first) / (train_time_last -
train_time_first). The first window holds the start-up costs (process-group set-up, first-step
allocation, data-loader warm-up) that a longer run amortises, so keeping it would understate
large worker counts, whose runs are shorter. Evaluation time is excluded because `train_time_s`
excludes it. A run with one evaluation falls back to samples / train_time_s at that row; a table
without samples and train time (e.g. published numbers) uses the mean of its `throughput` column
over the windows after the first.
"""
from __future__ import annotations

import pandas as pd

from scaling_study.contract import HP_PREFIX
from scaling_study.results.records import CONFIG_COLUMNS, Needs, ordered

THROUGHPUT_INPUTS = (("samples", "train_time_s"), ("throughput",))
RUN_THROUGHPUT = Needs("run throughput", any_of=THROUGHPUT_INPUTS)
_FINAL_COLUMNS = ("step", "samples", "train_time_s", "wall_time_s")


def config_columns(records: pd.DataFrame) -> list[str]:
    """The configuration and swept-hyperparameter (`hp.*`) columns present in `records`."""
    hp = [c for c in records.columns if c.startswith(HP_PREFIX)]
    return [c for c in CONFIG_COLUMNS if c in records.columns] + hp


def run_config(records: pd.DataFrame) -> pd.DataFrame:
    """One row per run: source, run ids and configuration as of the run's first evaluation."""
    ids = [c for c in ("source", "run_id", "trial_id") if c in records.columns]
    first = ordered(records).drop_duplicates("run", keep="first")
    return first[["run", *ids, *config_columns(records)]].reset_index(drop=True)


def steady_throughput(records: pd.DataFrame) -> pd.Series:
    """Steady-state training samples/s per run (see the module docstring), indexed by run."""
    RUN_THROUGHPUT.check(records)
    cols = records.columns
    if {"samples", "train_time_s"} <= set(cols) and records[["samples", "train_time_s"]].notna().any().all():
        rows = ordered(records.dropna(subset=["samples", "train_time_s"]))
        first = rows.drop_duplicates("run", keep="first").set_index("run")
        last = rows.drop_duplicates("run", keep="last").set_index("run")
        d_samples = last["samples"] - first["samples"]
        d_time = last["train_time_s"] - first["train_time_s"]
        whole = last["samples"] / last["train_time_s"]
        steady = d_samples / d_time.where(d_time > 0)
        n_evals = rows.groupby("run", sort=False).size()
        return steady.where(n_evals > 1, whole).rename("throughput")
    rows = ordered(records.dropna(subset=["throughput"]))
    window = rows.groupby("run", sort=False).cumcount()
    size = rows.groupby("run", sort=False)["throughput"].transform("size")
    later = rows[(window > 0) | (size == 1)]
    return later.groupby("run", sort=False)["throughput"].mean().rename("throughput")


def best_metric(records: pd.DataFrame, metric: str, mode: str = "max") -> pd.Series:
    """Each run's best value of `metric` over its evaluations (max, or min for mode="min")."""
    values = records.dropna(subset=[metric]).groupby("run", sort=False)[metric]
    return (values.max() if mode == "max" else values.min()).rename(f"best_{metric}")


def final_metric(records: pd.DataFrame, metric: str) -> pd.Series:
    """Each run's `metric` at its last evaluation that has one."""
    rows = ordered(records.dropna(subset=[metric]))
    last = rows.drop_duplicates("run", keep="last").set_index("run")
    return last[metric].rename(f"final_{metric}")


def run_summary(records: pd.DataFrame, metric: str | None = None, mode: str = "max") -> pd.DataFrame:
    """One row per run: configuration, evaluations, final progress, throughput and metric.

    Columns: run, source, ids and configuration (see `run_config`), n_evals, final step /
    samples / train_time_s / wall_time_s (where recorded), throughput (where computable), and
    final_<metric> / best_<metric> when `metric` is given and recorded.
    """
    summary = run_config(records).set_index("run")
    g = ordered(records).groupby("run", sort=False)
    summary["n_evals"] = g.size()
    for col in _FINAL_COLUMNS:
        if col in records.columns and records[col].notna().any():
            summary[f"final_{col}" if col == "step" else col] = g[col].max()
    if RUN_THROUGHPUT.missing(records) is None:
        summary["throughput"] = steady_throughput(records)
    if metric and metric in records.columns and records[metric].notna().any():
        summary[f"final_{metric}"] = final_metric(records, metric)
        summary[f"best_{metric}"] = best_metric(records, metric, mode)
    return summary.reset_index()
