"""Time to a target metric, how it scales with worker count, and ranking runs for export.

Definitions (the dashboard states them from `DEFINITION`):

- A run's time to target is the `train_time_s` and `wall_time_s` of its first evaluation, in
  training order, whose metric is at or above the target (at or below for a metric to minimise,
  such as loss). A run with no such evaluation has "not reached" it: `reached` is False and its
  times are NaN. Only evaluations are seen, so the time is an upper bound by at most one
  evaluation interval.
- Across worker counts, runs are grouped as for weak or strong scaling (see `scaling.py`) and,
  because convergence depends on them, also by every swept hyperparameter (`hp.*`) other than
  worker count, batch size, accumulation and seed. The time of a (group, N) cell is the mean over
  the repeats that reached the target; speedup = TTT(N0) / TTT(N) and efficiency
  = speedup × N0 / N. LAMB's "49× faster on 64× the hardware" is an efficiency of 76.7 %.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from scaling_study.contract import HP_PREFIX, metric as contract_metric
from scaling_study.errors import UserError
from scaling_study.results.records import Needs, ordered
from scaling_study.results.runs import best_metric, run_config, run_summary
from scaling_study.results.scaling import STRONG_KEYS, WEAK_KEYS, in_mode, present, scale_cells

# Swept keys that vary with N by design, or are repeats: not part of a time-to-target group.
_NOT_GROUPING = ("worker", "batch", "accum", "seed")

DEFINITION = (
    "Time to target: train time (evaluation excluded) and wall time of a run's first evaluation at "
    "or past the target; “not reached” where none is. Across worker counts: mean over the repeats "
    "that reached it; speedup = TTT(N0)/TTT(N), efficiency = speedup × N0/N (LAMB: 49× faster on "
    "64× the hardware = 76.7 %). Groups as for weak/strong scaling plus every swept "
    "hyperparameter other than workers, batch, accumulation and seed."
)


@dataclass(frozen=True)
class Target:
    """A metric value to reach: `metric` >= `value` (mode "max") or <= `value` (mode "min")."""

    metric: str
    value: float
    mode: str = "max"

    def met(self, values: pd.Series) -> pd.Series:
        """Which of `values` reach the target (NaN never does)."""
        return values >= self.value if self.mode == "max" else values <= self.value

    def __str__(self) -> str:
        return f"{self.metric} {'≥' if self.mode == 'max' else '≤'} {self.value:g}"


def make_target(metric: str, value: float) -> Target:
    """A checked Target. UserError for an unknown metric or a value outside the metric's scale."""
    m = contract_metric(metric, "--target-metric")
    # The scale catches "--target-metric mlm_acc --target 60".
    if m.scale is not None and not 0 <= value <= m.scale:
        raise UserError(f"--target {value:g} is outside the range of {metric} ({m.unit_hint()})")
    return Target(metric, float(value), m.mode)


def resolve_target(records: pd.DataFrame, metric: str | None = None,
                   value: float | None = None) -> Target | None:
    """The target to report: the one given, else the one the records carry, else None.

    Records carry a target in `target_metric`/`target_value`; if they hold several different
    ones, the user must choose (UserError listing them).
    """
    if (metric is None) != (value is None):
        raise UserError("give --target-metric and --target together (e.g. --target-metric f1 --target 88)")
    if metric is not None:
        return make_target(metric, value)
    if not {"target_metric", "target_value"} <= set(records.columns):
        return None
    pairs = records.loc[records["target_metric"] != "", ["target_metric", "target_value"]]
    pairs = pairs.dropna().drop_duplicates()
    if pairs.empty:
        return None
    if len(pairs) > 1:
        found = ", ".join(f"{m}={v:g}" for m, v in pairs.itertuples(index=False))
        raise UserError(f"the records hold several targets ({found}): choose one with --target-metric and --target")
    return make_target(*pairs.iloc[0])


def time_to_target(records: pd.DataFrame, target: Target) -> pd.DataFrame:
    """Per run with any value of the metric: configuration, `reached`, and the step, samples,
    train_time_s and wall_time_s of its first evaluation that reached `target` (NaN if none),
    the metric there (`<metric>_at_target`) and the run's best value (`best_<metric>`).

    Where the records have steps: `step_before`, the step of the evaluation before that first
    hit (0 where the first evaluation hit: the target was crossed somewhere in
    (step_before, step]), and `last_step`, the last step evaluated (a run that did not reach the
    target needs more than that)."""
    Needs(f"time to {target}", (target.metric, "train_time_s")).check(records)
    rows = ordered(records.dropna(subset=[target.metric]))
    met = target.met(rows[target.metric])
    hits = rows[met].drop_duplicates("run").set_index("run")
    table = run_config(rows).set_index("run")
    table["reached"] = table.index.isin(hits.index)
    for col in ("step", "samples", "train_time_s", "wall_time_s"):
        if col in hits.columns:
            table[col] = hits[col]
    if "step" in rows.columns:
        before = rows[~met.groupby(rows["run"]).cummax()]  # each run's evaluations before its first hit
        table["step_before"] = before.groupby("run")["step"].last().reindex(table.index).fillna(0.0)
        table.loc[~table["reached"], "step_before"] = float("nan")
        table["last_step"] = rows.groupby("run")["step"].max()
    table[f"{target.metric}_at_target"] = hits[target.metric]
    table[f"best_{target.metric}"] = best_metric(rows, target.metric, target.mode)
    return table.reset_index()


def target_keys(table: pd.DataFrame, mode: str) -> list[str]:
    """Grouping keys for time-to-target scaling in `mode` ("weak" or "strong")."""
    base = present(table, WEAK_KEYS if mode == "weak" else STRONG_KEYS)
    swept = [c for c in table.columns
             if c.startswith(HP_PREFIX) and not any(word in c for word in _NOT_GROUPING)]
    # A swept key that never splits a group (hp.optimizer.name next to optimizer) adds nothing.
    return base + [c for c in swept if _splits(table, base, c)]


def _splits(table: pd.DataFrame, keys: list[str], col: str) -> bool:
    if not keys:
        return table[col].nunique() > 1
    return bool((table.groupby(keys, dropna=False)[col].nunique() > 1).any())


def target_scaling(records: pd.DataFrame, target: Target, mode: str = "weak") -> pd.DataFrame:
    """Time to `target` per worker count, with speedup and efficiency against the baseline.

    Columns: the group keys (`target_keys`), num_workers, n_runs, n_reached,
    train_time_s_mean/_min/_max, wall_time_s_mean, baseline_workers, baseline_train_time_s,
    speedup (NaN where N or N0 never reached the target), wall_speedup and efficiency.
    """
    Needs(f"time-to-target scaling ({target})", (target.metric, "train_time_s", "num_workers")).check(records)
    table = in_mode(time_to_target(records, target), mode).dropna(subset=["num_workers"])
    keys = target_keys(table, mode)
    cells = scale_cells(table[[*keys, "num_workers", "train_time_s"]], keys, "train_time_s")
    cells = cells.rename(columns={"n_train_time_s": "n_reached"})
    if "wall_time_s" in table.columns and table["wall_time_s"].notna().any():
        wall = scale_cells(table[[*keys, "num_workers", "wall_time_s"]], keys, "wall_time_s")
        cells["wall_time_s_mean"] = wall["wall_time_s_mean"].to_numpy()
        cells["wall_speedup"] = (wall["baseline_wall_time_s"] / wall["wall_time_s_mean"]).to_numpy()
    cells["speedup"] = cells["baseline_train_time_s"] / cells["train_time_s_mean"]
    cells["efficiency"] = cells["speedup"] * cells["baseline_workers"] / cells["num_workers"]
    return cells


def rank_by_time_to_target(records: pd.DataFrame, target: Target) -> pd.DataFrame:
    """The `time_to_target` table ranked: runs that reached the target first, fastest train
    time first; then the others, best metric first. Adds `rank` (1 = best)."""
    table = time_to_target(records, target)
    best = f"best_{target.metric}"
    ascending_best = target.mode == "min"
    ranked = table.sort_values(
        ["reached", "train_time_s", best], ascending=[False, True, ascending_best],
        kind="stable", na_position="last",
    ).reset_index(drop=True)
    ranked.insert(0, "rank", range(1, len(ranked) + 1))
    return ranked


def best_trial(records: pd.DataFrame, metric: str, mode: str = "max") -> pd.Series:
    """The run with the best value of `metric` over its evaluations (ties: least train time).

    Returns that run's `run_summary` row: ids, configuration, `hp.*` swept values, final progress,
    throughput and `best_<metric>` — what an export needs to write the run's job again.
    """
    if mode not in ("max", "min"):
        raise UserError(f"mode {mode!r}: valid modes are max, min")
    Needs(f"best trial by {metric}", (metric,)).check(records)
    summary = run_summary(records, metric, mode).dropna(subset=[f"best_{metric}"])
    order = [f"best_{metric}"] + (["train_time_s"] if "train_time_s" in summary.columns else [])
    ascending = [mode == "min"] + [True] * (len(order) - 1)
    return summary.sort_values(order, ascending=ascending, kind="stable").iloc[0]
