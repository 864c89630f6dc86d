"""Gathers a sweep's trials into `records.csv` (every evaluation) and `trials.csv` (one row each).

Ray-free: `report` reads a sweep that has not been gathered yet (running, or its driver killed)
through `gather_records`.
"""
from __future__ import annotations

import json
import math
import re

import pandas as pd

from scaling_study.contract import HP_PREFIX
from scaling_study.layout import PARAMS, RECORDS, TRIALS_DIR, TRIALS_FILE
from scaling_study.storage import Loc, as_path, read_csv, write_csv


def _trial_params(trials_dir) -> dict[str, dict]:
    out = {}
    for folder in Loc(trials_dir).subdirs():
        path = folder / PARAMS
        if path.is_file():
            data = json.loads(path.read_text())
            out[data["trial_id"]] = data["params"]
    return out


def gather_records(sweep_dir) -> pd.DataFrame:
    """All the sweep's trials' records with their swept hyperparameters as `hp.<key>` columns."""
    trials_dir, frames = Loc(sweep_dir) / TRIALS_DIR, []
    for trial_id, params in _trial_params(trials_dir).items():
        path = Loc(trials_dir) / trial_id / RECORDS
        rec = read_csv(path) if path.is_file() else pd.DataFrame()
        if rec.empty:  # a trial that has not evaluated yet
            continue
        rec = rec.assign(trial_id=trial_id, **{HP_PREFIX + k: v for k, v in params.items()})
        frames.append(rec)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _last_line(error) -> str:
    """The exception's own message: Ray wraps it in lines about actors and ANSI colours."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else type(error).__name__


def trial_rows(grid, params: dict[str, dict], metric: str, mode: str) -> pd.DataFrame:
    """One row per trial: status, whether ASHA stopped it early, how far it got, its best metric."""
    rows = []
    for result in grid:
        m = result.metrics or {}
        trial_id = m.get("trial_id") or str(result.path).rstrip("/").rsplit("/", 1)[-1]  # a path on Ray's fs
        status = "ERROR" if result.error is not None else ("DONE" if m.get("finished") else "STOPPED")
        rows.append({
            "trial_id": trial_id, "status": status,
            "stopped_early": status == "STOPPED",
            **{HP_PREFIX + k: v for k, v in params.get(trial_id, {}).items()},
            "samples": m.get("samples", math.nan), "train_time_s": m.get("train_time_s", math.nan),
            "wall_time_s": m.get("wall_time_s", math.nan),
            f"last_{metric}": m.get(metric, math.nan),
            "error": _last_line(result.error) if result.error is not None else "",
        })
    return pd.DataFrame(rows)


def gather(space, sweep_dir: Loc, grid) -> dict:
    """Write the sweep's tables; returns their paths (a `Path`, or a `Loc` for a URI) and the best trial."""
    sweep_dir = Loc(sweep_dir)
    trials_dir = sweep_dir / TRIALS_DIR
    params = _trial_params(trials_dir)
    records = gather_records(sweep_dir)
    metric, mode = space.scheduler.metric, space.scheduler.mode
    trials = trial_rows(grid, params, metric, mode)
    if not records.empty and metric in records:
        best_by_trial = records.groupby("trial_id")[metric].agg("max" if mode == "max" else "min")
        trials[f"best_{metric}"] = trials["trial_id"].map(best_by_trial)
    write_csv(records, sweep_dir / RECORDS)
    write_csv(trials, sweep_dir / TRIALS_FILE)
    best = None
    col = f"best_{metric}"
    if col in trials and trials[col].notna().any():
        best = trials.loc[trials[col].idxmax() if mode == "max" else trials[col].idxmin()].to_dict()
    return {"records": as_path(sweep_dir / RECORDS), "trials": as_path(sweep_dir / TRIALS_FILE), "best": best}
