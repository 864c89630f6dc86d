"""Segments of elastic runs: the stretches of a run trained on one worker count.

An elastic run (`scaling.num_workers: [MIN, MAX]`) restarts from its latest checkpoint on another
worker count when it loses a node or finds room to grow; its global batch stays, its
accumulation follows the worker count. Each evaluation records the worker count it ran on, so
the run splits into segments: consecutive evaluations on the same count.

- A segment's throughput is the samples it trained divided by the train time they took
  (evaluation and restarts excluded, as `train_time_s` excludes them): from the run's previous
  evaluation (where the restart resumed) to the segment's last. A run's first segment starts
  at its first evaluation, as a fixed run's steady throughput does (`results.runs`).
- Its efficiency compares it with the run's own segments on the fewest workers N0:
  throughput / ((N / N0) × throughput(N0)), the mean over those segments.
- Scaling figures take each segment of a resized run as a run of its own on its worker count
  (`split_resized`); time to a fixed amount of work has no meaning for a segment, so the
  strong-scaling figure leaves resized runs out (`resized_runs` names them).
"""
from __future__ import annotations

import pandas as pd

from scaling_study.results.records import Needs, ordered

SEGMENTS = Needs("elastic segments", ("num_workers", "samples", "train_time_s", "step"))
DEFINITION = ("An elastic run's segments: consecutive evaluations on one worker count. Throughput: samples "
              "trained in the segment / their train time (from the evaluation it resumed at); efficiency: "
              "throughput / ((N/N0) × throughput on the run's fewest workers N0).")


def resized_runs(records: pd.DataFrame) -> list[str]:
    """Runs whose evaluations ran on more than one worker count."""
    if "num_workers" not in records.columns or records.empty:
        return []
    counts = records.dropna(subset=["num_workers"]).groupby("run", sort=False)["num_workers"].nunique()
    return counts[counts > 1].index.tolist()


def _numbered(records: pd.DataFrame) -> pd.DataFrame:
    """The records in order with a `segment` number (from 0) within each run."""
    rows = ordered(records.dropna(subset=["num_workers"]))
    changed = rows.groupby("run", sort=False)["num_workers"].transform(lambda n: n.ne(n.shift()).cumsum() - 1)
    return rows.assign(segment=changed.astype(int))


def split_resized(records: pd.DataFrame) -> pd.DataFrame:
    """`records` with each segment of a resized run labelled as a run of its own
    (`RUN [N workers, from step S]`); other runs unchanged."""
    resized = resized_runs(records)
    if not resized:
        return records
    rows = _numbered(records)
    first_step = rows.groupby(["run", "segment"])["step"].transform("min")
    label = (rows["run"] + " [" + rows["num_workers"].astype(int).astype(str) + " workers, from step "
             + first_step.astype(int).astype(str) + "]")
    rows["run"] = label.where(rows["run"].isin(resized), rows["run"])
    return rows.drop(columns="segment")


def segments(records: pd.DataFrame) -> pd.DataFrame:
    """One row per segment of each resized run (none when no run was resized).

    Columns: run, segment (from 0), num_workers, grad_accum, global_batch, first_step,
    last_step, n_evals, samples (trained in the segment), train_time_s (theirs), throughput,
    baseline_workers (N0), efficiency.
    """
    resized = resized_runs(records)
    if not resized:
        return pd.DataFrame()
    SEGMENTS.check(records)
    rows = _numbered(records[records["run"].isin(resized)])
    # Where each segment starts from: the run's previous evaluation (its first, for the first).
    prev = rows.groupby("run", sort=False)[["samples", "train_time_s"]].shift()
    first = rows["segment"] == 0
    prev.loc[first] = rows.loc[first].groupby("run", sort=False)[["samples", "train_time_s"]].transform("first")
    rows = rows.assign(d_samples=rows["samples"] - prev["samples"], d_time=rows["train_time_s"] - prev["train_time_s"])
    agg = {"num_workers": "first", "step": ["min", "max", "size"], "d_samples": "sum", "d_time": "sum"}
    for col in ("grad_accum", "global_batch"):
        if col in rows.columns:
            agg[col] = "first"
    table = rows.groupby(["run", "segment"], sort=False).agg(agg)
    table.columns = ["num_workers", "first_step", "last_step", "n_evals", "samples", "train_time_s",
                     *[c for c in ("grad_accum", "global_batch") if c in rows.columns]]
    table = table.reset_index()
    table["throughput"] = table["samples"] / table["train_time_s"].where(table["train_time_s"] > 0)
    base_n = table.groupby("run", sort=False)["num_workers"].transform("min")
    at_base = table["throughput"].where(table["num_workers"] == base_n)
    base_thr = at_base.groupby(table["run"]).transform("mean")
    table["baseline_workers"] = base_n
    table["efficiency"] = table["throughput"] / (table["num_workers"] / base_n * base_thr)
    cols = ["run", "segment", "num_workers", "grad_accum", "global_batch", "first_step", "last_step", "n_evals",
            "samples", "train_time_s", "throughput", "baseline_workers", "efficiency"]
    return table[[c for c in cols if c in table.columns]]
