"""Assemble a report (its sections, tables and notes) from loaded results, and write it to disk.

A section whose inputs are absent is kept, marked skipped with the reason (which names the
missing columns and files), so the dashboard says what it could not draw; only a report in which
every section is skipped is an error.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from scaling_study.answers import sections as answers
from scaling_study.answers.plan import PlanOptions
from scaling_study.answers.recommend import Plan
from scaling_study.errors import UserError
from scaling_study.reports import explore
from scaling_study.results import scaling, segments, sweeps, targets
from scaling_study.results.records import Needs, Results

DASHBOARD = "dashboard.html"
TABLES_DIR = "tables"


@dataclass
class Section:
    """One chart (or table) of the dashboard: its data, definitions and notes, or why it is absent."""

    key: str
    title: str
    definition: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class Report:
    """Everything the dashboard shows; rendering reads it and computes nothing."""

    title: str
    inputs: tuple[str, ...]
    target: targets.Target | None
    metric: str | None
    sections: list[Section]

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table behind a chart, by file stem."""
        return {name: df for s in self.sections for name, df in s.tables.items()}


@dataclass(frozen=True)
class _Inputs:
    records: pd.DataFrame
    trials: pd.DataFrame | None
    target: targets.Target | None
    metric: str | None
    plan: Plan | None = None
    plan_note: str = ""
    """What the plan assumes, or why there is none."""


class _Skip(Exception):
    """A section has nothing to show; the message says why."""


def _usable(needs: Needs, records: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Rows of the sources that can feed `needs`, and notes on the others; raise if none can."""
    rows, notes = needs.usable(records)
    if rows.empty:
        needs.check(records)
    return rows, notes


def _weak(x: _Inputs):
    rows, notes = _usable(scaling.WEAK_SCALING, x.records)
    table, parts = scaling.weak_scaling(rows), segments.segments(rows)
    if table.empty and parts.empty:
        raise _Skip("no group of runs at a fixed per-worker batch spans more than one worker count")
    tables = {"weak_scaling": table} if not table.empty else {}
    if not parts.empty:
        tables["segments"] = parts
        notes.append(f"elastic runs, segment by segment (tables/segments.csv): {', '.join(parts['run'].unique())}. "
                     + segments.DEFINITION)
    return tables, notes + scaling.baseline_notes(table, scaling.WEAK_KEYS, "weak scaling")


def _strong(x: _Inputs):
    rows, notes = _usable(scaling.STRONG_SCALING, x.records)
    table = scaling.strong_scaling(rows)
    if table.empty:
        raise _Skip("no group of runs at a fixed global batch spans more than one worker count")
    resized = segments.resized_runs(rows)
    if resized:
        notes.append(f"left out: elastic runs that changed their worker count ({', '.join(resized)}); "
                     "their segments are in the weak-scaling section")
    return {"strong_scaling": table}, notes + scaling.baseline_notes(table, scaling.STRONG_KEYS, "strong scaling")


def _target(x: _Inputs):
    if x.target is None:
        raise _Skip("no target: pass --target-metric and --target (e.g. --target-metric f1 --target 88), "
                    "or record target_metric and target_value")
    needs = Needs(f"time to {x.target}", (x.target.metric, "train_time_s"))
    rows, notes = _usable(needs, x.records)
    tables = {"time_to_target": targets.rank_by_time_to_target(rows, x.target)}
    if "num_workers" in rows.columns and rows["num_workers"].notna().any():
        for mode in ("weak", "strong"):
            table = targets.target_scaling(rows, x.target, mode)
            if not table.empty:
                tables[f"target_scaling_{mode}"] = table
                keys = targets.target_keys(table, mode)
                notes += scaling.baseline_notes(table, tuple(keys), f"time to target ({mode})")
                notes += _unreached_baselines(table, keys, mode, x.target)
    missed = tables["time_to_target"].loc[~tables["time_to_target"]["reached"], "run"]
    if len(missed):
        notes.append(f"not reached by {len(missed)} run(s): {', '.join(missed[:10])}{' …' if len(missed) > 10 else ''}")
    return tables, notes


def _unreached_baselines(table: pd.DataFrame, keys: list[str], mode: str, target) -> list[str]:
    """Groups whose baseline never reached the target have no speedup: say which."""
    base = table[(table["num_workers"] == table["baseline_workers"]) & (table["n_reached"] == 0)]
    return [f"time to target ({mode}): no N0 = {row['baseline_workers']:g} run reached {target} for "
            f"{scaling.describe_group(row, keys)}, so that group has no speedup" for _, row in base.iterrows()]


def _curves(x: _Inputs):
    metric = _metric(x)
    rows, notes = _usable(Needs(f"{metric} vs train time", (metric, "train_time_s")), x.records)
    return {"metric_curves": sweeps.metric_curves(rows, metric)}, notes


def _grid(x: _Inputs):
    metric = _metric(x)
    lr = sweeps.grid_lr_column(x.records)  # a source without that LR column is noted, not mixed in
    needs = Needs(f"final {metric} over LR × batch", ("optimizer", "global_batch", lr, metric))
    rows, notes = _usable(needs, x.records)
    return {"final_metric_grid": sweeps.final_metric_grid(rows, metric)}, notes


def _lifetimes(x: _Inputs):
    return {"trial_lifetimes": sweeps.trial_lifetimes(x.records, x.trials)}, []


def _trials(x: _Inputs):
    return {"trials": sweeps.trials_table(x.records, x.trials, x.metric)}, []


def _tradeoff(x: _Inputs):
    return answers.tradeoff_section(x.records, x.target)


def _noise(x: _Inputs):
    return answers.noise_section(x.records)


def _projection(x: _Inputs):
    if x.plan is None:
        raise _Skip(x.plan_note)
    tables, notes = answers.projection_section(x.records, x.target, x.plan)
    return tables, [x.plan_note, *notes]


def _recommendation(x: _Inputs):
    tables, notes = answers.recommendation_section(x.records, x.target, x.plan)
    # A projected row's detail names its cluster; without a plan, say why nothing is projected.
    return tables, notes if x.plan else [f"measured rows only; nothing projected: {x.plan_note}", *notes]


def _metric(x: _Inputs) -> str:
    if x.metric is None:
        raise _Skip("no metric recorded (f1, mlm_acc or em)")
    return x.metric


# (key, title, definition, compute), in the order the dashboard shows them.
_SECTIONS: tuple[tuple[str, str, str, Callable], ...] = (
    ("weak", "Throughput and weak-scaling efficiency", scaling.DEFINITIONS["weak"], _weak),
    ("strong", "Strong scaling: speedup and efficiency", scaling.DEFINITIONS["strong"], _strong),
    ("target", "Time to target", targets.DEFINITION, _target),
    ("tradeoff", answers.TITLES["tradeoff"], answers.DEFINITIONS["tradeoff"], _tradeoff),
    ("noise", answers.TITLES["noise"], answers.DEFINITIONS["noise"], _noise),
    ("projection", answers.TITLES["projection"], answers.DEFINITIONS["projection"], _projection),
    ("recommendation", answers.TITLES["recommendation"], answers.DEFINITIONS["recommendation"], _recommendation),
    ("curves", "Metric vs train time", sweeps.DEFINITIONS["curves"], _curves),
    ("grid", "Final metric over LR × batch", sweeps.DEFINITIONS["grid"], _grid),
    ("lifetimes", "ASHA trial lifetimes", sweeps.DEFINITIONS["lifetimes"], _lifetimes),
    *explore.SECTIONS,  # parallel coordinates, importance, best so far, slices
    ("trials", "Trials", sweeps.DEFINITIONS["trials"], _trials),
)


def build_report(results: Results, target: targets.Target | None = None, title: str | None = None,
                 plan: PlanOptions | None = None) -> Report:
    """Compute every section of the dashboard from `results`; the projection and the
    recommendation follow `plan` (default: `PlanOptions()`, gradient bytes from the records' model).

    Raises UserError when no section can be drawn at all (the message lists each section's reason).
    """
    try:
        metric = sweeps.primary_metric(results.records, target.metric if target else None)
    except UserError:
        metric = None
    try:
        resolved, plan_note = (plan or PlanOptions()).resolve(results.records)
    except UserError as exc:  # shown on the sections that need a plan
        resolved, plan_note = None, str(exc)
    inputs = _Inputs(results.records, results.trials, target, metric, resolved, plan_note)
    sections = [_compute(key, name, text, fn, inputs) for key, name, text, fn in _SECTIONS]
    # The trials table always exists; a report with nothing else would be an empty dashboard.
    if all(s.skipped for s in sections if s.key != "trials"):
        reasons = "\n".join(f"  {s.title}: {s.skipped}" for s in sections if s.skipped)
        raise UserError(f"nothing to report from {', '.join(results.sources)}:\n{reasons}")
    return Report(title or "Scaling study", results.sources, target, metric, sections)


def build_steps_report(path: Path, title: str | None = None) -> Report:
    """A report of one section, the tradeoff, from a plain steps-to-target table
    (`answers.published`: batch, samples or steps, optional run and optimizer)."""
    from scaling_study.answers.published import read_steps_table, steps_table_sections

    tables = steps_table_sections(read_steps_table(Path(path)))
    notes = [f"{row['optimizer']}: {row['note']}" for _, row in tables["tradeoff_fit"].iterrows() if row["note"]]
    section = Section("tradeoff", answers.TITLES["tradeoff"], answers.DEFINITIONS["tradeoff"], tables, notes)
    return Report(title or f"Steps to target against batch: {Path(path).name}", (str(path),), None, None, [section])


def _compute(key: str, title: str, definition: str, fn: Callable, inputs: _Inputs) -> Section:
    section = Section(key, title, definition)
    try:
        section.tables, section.notes = fn(inputs)
    except (_Skip, UserError) as exc:
        section.skipped = str(exc)
    return section


def write_report(report: Report, html: str, out: Path) -> Path:
    """Write `html` as OUT/dashboard.html and every table as OUT/tables/NAME.csv, atomically.

    Everything is written into a temporary sibling directory that then replaces `out`, so a
    failure leaves either the previous report or none, never a half-written one. An existing
    `out` is replaced only if it is empty or a previous report (holds dashboard.html).
    """
    out = Path(out)
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; a report is not
        (tmp / DASHBOARD).write_text(html, encoding="utf-8")
        (tmp / TABLES_DIR).mkdir()
        for name, table in report.tables().items():
            table.to_csv(tmp / TABLES_DIR / f"{name}.csv", index=False)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / DASHBOARD


def _check_replaceable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / DASHBOARD).is_file():
        raise UserError(f"--out {out}: a non-empty directory that is not a report; choose another --out")


def _replace(tmp: Path, out: Path) -> None:
    """Move `tmp` to `out`, swapping out a previous report and deleting it only once replaced."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
