"""Steps to a target from elsewhere (a published table of convergence points) -> the tradeoff.

The table is a CSV with one row per run (or per batch, without `run`):

| column | meaning |
|---|---|
| `batch` | samples per optimizer step (the global batch) |
| `samples` or `steps` | samples, or optimizer steps, to the target (one of them) |
| `run` | optional: names the run or seed (repeats at a batch are the bootstrap's runs) |
| `optimizer` | optional: one fit per optimizer (absent: one fit, named `all`) |

Published counts are exact (they are not read off evaluations), so each run's interval is a
point: steps_lo = steps_hi. `steps_table_sections` gives the same tables as the records'
tradeoff section (`tradeoff.fit_table`, `holdout.tradeoff_holdout`, `tradeoff.tradeoff_curve`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaling_study.answers.holdout import tradeoff_holdout
from scaling_study.answers.intervals import midpoints
from scaling_study.answers.tradeoff import fit_table, groups_of, tradeoff_curve, vs_perfect
from scaling_study.errors import UserError

KEYS = ["optimizer"]
ALL = "all"
_EXPECTED = "expected columns batch and samples (or steps), optional run and optimizer"


def read_steps_table(path: Path) -> pd.DataFrame:
    """The runs of a steps-to-target CSV: optimizer, global_batch, run, reached (True),
    steps_lo = steps_hi. UserError naming the file, the column and what is valid."""
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"--steps-to-target {path}: cannot read it as CSV ({exc}); {_EXPECTED}") from None
    found = ", ".join(map(str, table.columns)) or "none"
    if "batch" not in table.columns or ("samples" in table.columns) == ("steps" in table.columns):
        raise UserError(f"--steps-to-target {path}: columns {found}: {_EXPECTED} (exactly one of samples, steps)")
    amount = "samples" if "samples" in table.columns else "steps"
    for col in ("batch", amount):
        values = pd.to_numeric(table[col], errors="coerce")
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserError(f"--steps-to-target {path}: row {row + 2}, column {col}: {table[col].iloc[row]} "
                            "is not a positive number")
        table[col] = values
    steps = table["steps"] if amount == "steps" else table["samples"] / table["batch"]
    optimizer = table["optimizer"].astype(str) if "optimizer" in table.columns else ALL
    run = table["run"].astype(str) if "run" in table.columns else [f"row {i + 2}" for i in range(len(table))]
    return pd.DataFrame({"optimizer": optimizer, "global_batch": table["batch"].astype(float), "run": run,
                         "reached": True, "steps_lo": steps.astype(float), "steps_hi": steps.astype(float)})


def points_of(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (optimizer, batch): n_runs, n_reached, steps, steps_lo, steps_hi, samples, vs_perfect
    and steps_sd (the runs' standard deviation), in the shape of `tradeoff.steps_to_target`."""
    parts = []
    for key, part in groups_of(runs, KEYS):
        points = midpoints(part).assign(optimizer=key[0])
        points["steps_sd"] = part.groupby("global_batch", sort=True)["steps_hi"].std().to_numpy()
        parts.append(points)
    points = pd.concat(parts, ignore_index=True)
    points["n_reached"] = points["n_runs"]
    points["samples"] = points["steps"] * points["global_batch"]
    points["vs_perfect"] = vs_perfect(points, KEYS)
    return points[["optimizer", "global_batch", "n_runs", "n_reached", "steps", "steps_lo", "steps_hi",
                   "steps_sd", "samples", "vs_perfect"]]


def steps_table_sections(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """{"steps_to_target", "tradeoff_fit", "tradeoff_holdout", "tradeoff_curve"} from the runs."""
    points = points_of(runs)
    fits_table, fits = fit_table(points, runs, KEYS)
    return {"steps_to_target": points, "tradeoff_fit": fits_table.drop(columns=["b_noise_at_target", "b_noise_mean"]),
            "tradeoff_holdout": tradeoff_holdout(points, runs, KEYS), "tradeoff_curve": tradeoff_curve(fits, KEYS)}
