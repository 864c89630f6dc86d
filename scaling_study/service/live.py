"""The reports over a study as it is now: the tables, figures, dashboard and exported job that
`scaling-study report` and `export` make, computed by the same functions (`build_report`,
`figure_for`, `render_dashboard`, `export`) from the records the service already holds.

A sweep's records are gathered into `SWEEP/records.csv` only when it ends; until then they are
assembled here the way `tune.gather` assembles them (each trial's rows with its swept values as
`hp.<key>` columns), so a report of a running sweep reads like one of a finished sweep.
"""
from __future__ import annotations

import json
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import pandas as pd
import yaml

from scaling_study import layout
from scaling_study.contract import HP_PREFIX
from scaling_study.errors import UserError
from scaling_study.reports.build import Report, build_report
from scaling_study.results.records import Results, assign_runs, normalize
from scaling_study.results.targets import resolve_target
from scaling_study.service.roots import NotFound
from scaling_study.service.study import ERROR, FINISHED, RUN, STOPPED, USER_STOPPED, Study

_TRIAL_STATUS = {FINISHED: "DONE", STOPPED: "STOPPED", USER_STOPPED: "STOPPED", ERROR: "ERROR"}
RECORDS_TABLE = "records"


class Conflict(UserError):
    """The study cannot give that yet (the API answers 409 with the message)."""


def _records(study: Study) -> pd.DataFrame:
    frames = []
    for t in study.trials.values():
        if t.records.empty:
            continue
        frame = t.records
        if study.kind != RUN:
            frame = frame.assign(trial_id=t.trial_id, **{HP_PREFIX + k: v for k, v in t.params.items()})
        frames.append(frame)
    if not frames:
        raise Conflict(f"{study.loc}: no evaluations recorded yet")
    return pd.concat(frames, ignore_index=True)


def _trials(study: Study) -> pd.DataFrame | None:
    if study.kind == RUN:
        return None
    rows = [{"trial_id": t.trial_id, "status": _TRIAL_STATUS.get(t.state, t.state.upper()),
             "stopped_early": t.state in (STOPPED, USER_STOPPED), "samples": t.last("samples"),
             "error": t.error} for t in study.trials.values()]
    return pd.DataFrame(rows) if rows else None


def results(study: Study) -> Results:
    """The study's records (and trials table) as `results.records.load_results` would read them
    from a gathered sweep or a run folder: same columns, types, `source` and `run` labels."""
    with study.lock:
        records, trials = _records(study), _trials(study)
    source = str(study.loc / layout.RECORDS)
    table = assign_runs(normalize(records, source))
    trials_table = normalize(trials, str(study.loc / layout.TRIALS_FILE)) if trials is not None else None
    return Results(table, trials_table, (source,))


class Reports:
    """Reports per study, computed once per change of the study (keyed by its sequence number)."""

    def __init__(self, size: int = 16):
        self._cache: OrderedDict[tuple[str, int], tuple[Results, Report | None, str | None]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, study: Study) -> tuple[Results, Report | None, str | None]:
        """(results, the report or None, why there is none or a note on the target)."""
        key = (study.id, study.seq)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = self._compute(study)
        with self._lock:
            self._cache[key] = value
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return value

    @staticmethod
    def _compute(study: Study):
        return report_of(results(study), study.name)


def report_of(res: Results, title: str) -> tuple[Results, Report | None, str | None]:
    """(results, their report or None, why there is none or a note on the target): the target is
    the one the records carry, as `scaling-study report` takes it without --target."""
    note = None
    try:
        target = resolve_target(res.records)
    except UserError as exc:
        target, note = None, str(exc)
    try:
        return res, build_report(res, target, title), note
    except UserError as exc:
        return res, None, str(exc)


def combined(studies: list[Study]) -> Results:
    """Several studies' results in one table, as `scaling-study report A B` stacks them (runs
    with the same label in two studies are told apart by their source)."""
    parts = [results(s) for s in studies]
    records = assign_runs(pd.concat([p.records.drop(columns=["run"]) for p in parts], ignore_index=True))
    trials = [p.trials for p in parts if p.trials is not None]
    return Results(records, pd.concat(trials, ignore_index=True) if trials else None,
                   tuple(s for p in parts for s in p.sources))


def figures(report: Report | None, why: str | None) -> dict:
    """Every section of the report with its plotly figure as JSON (what `figure_for` draws)."""
    from scaling_study.reports.figures import figure_for

    if report is None:
        return {"sections": [], "note": why}
    sections = []
    for s in report.sections:
        fig = figure_for(s, report) if not s.skipped else None
        sections.append({"key": s.key, "title": s.title, "definition": s.definition, "notes": s.notes,
                         "skipped": s.skipped, "tables": list(s.tables),
                         "figure": plain(json.loads(fig.to_json())) if fig is not None else None})
    return {"sections": sections, "note": why, "target": str(report.target) if report.target else None,
            "metric": report.metric}


def plain(value):
    """A figure's JSON with plotly.py's base64 arrays ({"dtype", "bdata", "shape"}) as plain lists,
    so that the page can extend a trace with new points (`Plotly.extendTraces`)."""
    import base64

    import numpy as np

    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            shape = value.get("shape")
            if shape:
                array = array.reshape([int(n) for n in str(shape).split(",")])
            return array.tolist()
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def dashboard(report: Report | None, why: str | None) -> str:
    from scaling_study.reports.dashboard import render_dashboard

    if report is None:
        raise Conflict(f"no dashboard yet: {why}")
    return render_dashboard(report)


def table_csv(res: Results, report: Report | None, name: str) -> str:
    """A table of the report by name, or `records` (every evaluation), as CSV text."""
    if name == RECORDS_TABLE:
        return res.records.drop(columns=["source"]).to_csv(index=False)
    tables = report.tables() if report is not None else {}
    if name not in tables:
        raise NotFound(f"table {name!r}: valid: {', '.join([RECORDS_TABLE, *tables])}")
    return tables[name].to_csv(index=False)


def best_yaml(study: Study, *, metric: str | None, mode: str | None, workers: int | None,
              scaling: str | None, target_metric: str | None, target: float | None) -> tuple[str, str]:
    """(file name, YAML text) of the study's best trial's job, as `scaling-study export` writes it.

    A gathered sweep and a run folder are exported exactly as the CLI does; a sweep whose records
    are not gathered yet (running or interrupted) is exported from its trials' folders, leaving
    out trials that failed."""
    from scaling_study.reports.export import TIME_TO_TARGET, export

    metric = metric or study.metric
    if not metric:
        raise Conflict(f"{study.loc}: no metric recorded yet; give ?metric=")
    if (target_metric or target is not None) and metric != TIME_TO_TARGET:
        raise UserError(f"target_metric/target apply to metric={TIME_TO_TARGET}, not metric={metric}")
    paths, name = _export_sources(study, workers)
    with tempfile.TemporaryDirectory(prefix="scaling-study-export-") as tmp:
        out = Path(tmp) / "best.yaml"
        done = export(paths, metric, mode, out, workers=workers, scaling=scaling,
                      target_metric=target_metric, target=target, name=name)
        text = Path(done.path).read_text(encoding="utf-8")
    return f"{yaml.safe_load(text)['name']}.yaml", text


def _export_sources(study: Study, workers: int | None) -> tuple[list[str], str | None]:
    with study.lock:
        gathered = study.kind == RUN or bool(study.gathered)
        trials = [t.trial_id for t in study.trials.values() if len(t.records) and t.state != ERROR]
    if gathered:
        return [str(study.loc)], None
    if not trials:
        raise Conflict(f"{study.loc}: no trial has evaluations yet (failed trials are left out)")
    name = f"best_{study.name}" + (f"_{workers}w" if workers is not None else "")
    return [str(study.loc / layout.TRIALS_DIR / t) for t in trials], name
