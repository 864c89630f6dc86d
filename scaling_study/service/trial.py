"""One trial of a study as the service holds it: its records as read so far, when each row was
first seen, and what the studies list and the study page ask of it (its best and last values,
its worker counts, its curve for the charts), worked out once per change of its rows rather than
once per request.
"""
from __future__ import annotations

import bisect

import pandas as pd

from scaling_study.contract import HP_PREFIX, METRICS
from scaling_study.service.decimate import decimate

# Trial states (the study's own states are in `study`).
PENDING = "pending"
PLANNED_PREFIX = "planned-"
"""Rows of trials the sweep has not made yet are named `planned-1`, `planned-2`, ... (Tune gives
a trial its id only when it makes it)."""
_NO_ROWS = pd.DataFrame()  # shared by every trial not read yet (frames here are never changed in place)


def json_rows(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready rows: missing values as None, numpy scalars as Python numbers."""
    if frame.empty:
        return []
    names = [str(c) for c in frame.columns]
    values = frame.astype(object).to_numpy().tolist()  # Python scalars, in one pass per column block
    missing = frame.isna().to_numpy()
    if not missing.any():
        return [dict(zip(names, row)) for row in values]
    return [{k: None if m else v for k, v, m in zip(names, row, gaps)} for row, gaps in zip(values, missing.tolist())]


class Trial:
    """One trial of a sweep (or the one run of a run folder) and what is known about it."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id
        self.params: dict = {}
        self.records = _NO_ROWS
        self.seqs: list[int] = []  # the study's sequence number when each row was first seen
        self.reset_seq = 0  # when the rows were last replaced rather than added to
        self.state, self.error = PENDING, ""
        self.stopped_by_user: dict | None = None
        self.updated_ns = 0
        self.job: dict = {}  # its job.yaml, as data (for its own budget)
        self._memo: dict = {}  # values worked out from `records`, until they change

    def take(self, table, seq: int) -> bool:
        """Adopt a `tail.Table` read; True when rows were added or replaced."""
        if table.reset:
            self.records, self.seqs, self.reset_seq = table.frame, [seq] * len(table.frame), seq
        elif table.appended:
            self.records, self.seqs = table.frame, self.seqs + [seq] * table.appended
        else:
            return False
        self._memo = {}
        return True

    def rows_since(self, seq: int, limit: int | None = None, metric: str | None = None) -> tuple[list[dict], bool]:
        """(rows first seen after `seq`, whether they replace every row the reader had). More
        than `limit` rows are sent as the whole curve of `metric` decimated to `limit` rows
        (`decimate`), which replaces what the reader had."""
        if self.reset_seq > seq:
            frame, replaced = self.records, True
        else:
            frame, replaced = self.records.iloc[bisect.bisect_right(self.seqs, seq):], False
        if limit is not None and len(frame) > limit:
            return self.curve(limit, metric), True
        return json_rows(frame), replaced

    def curve(self, limit: int, metric: str | None) -> list[dict]:
        """Every row decimated to at most `limit` along `metric` (`decimate`), as JSON rows."""
        return self._remember(("curve", limit, metric), lambda: json_rows(decimate(self.records, metric, limit)), [])

    def _remember(self, key, compute, nothing=None):
        if self.records is _NO_ROWS:
            return nothing  # a trial not read yet (or without rows): no memo for each one
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def last(self, column: str):
        """The last recorded value of `column` (None if there is none)."""
        return self._remember(("last", column), lambda: self._last(column))

    def _last(self, column: str):
        if column not in self.records.columns:
            return None
        values = self.records[column].dropna()
        if values.empty:
            return None
        value = values.iloc[-1]
        return value.item() if hasattr(value, "item") else value

    def best(self, metric: str | None):
        """The best value of `metric` over every evaluation, in its own direction."""
        return self._remember(("best", metric), lambda: self._best(metric))

    def _best(self, metric: str | None):
        if not metric or metric not in self.records.columns:
            return None
        values = pd.to_numeric(self.records[metric], errors="coerce").dropna()
        if values.empty:
            return None
        return float(values.max() if METRICS[metric].maximise else values.min())

    def workers(self) -> frozenset[int]:
        """Every worker count the records show."""
        return self._remember("workers", self._workers, frozenset())

    def _workers(self) -> frozenset[int]:
        if "num_workers" not in self.records.columns:
            return frozenset()
        return frozenset(int(v) for v in pd.to_numeric(self.records["num_workers"], errors="coerce").dropna().unique())


def read_job(data: bytes) -> dict:
    """A trial's job.yaml as data (the safe loader; {} for anything but a mapping)."""
    import yaml

    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError:
        return {}
    return doc if isinstance(doc, dict) else {}


def job_budget(job: dict, time_attr: str, global_batch) -> float | None:
    """How far the trial's own job goes, in `time_attr` units: its steps (all phases), or for
    `samples` each phase's steps times its global batch (the job's, else the recorded one).
    None when the job does not say (a job given in epochs, a job not read yet)."""
    train = job.get("train") if isinstance(job.get("train"), dict) else {}
    phases = train.get("phases") if isinstance(train.get("phases"), list) else [train]
    total = 0.0
    for phase in phases:
        if not isinstance(phase, dict) or not isinstance(phase.get("steps", train.get("steps")), int):
            return None
        steps = phase.get("steps", train.get("steps"))
        if time_attr == "samples":
            batch = phase.get("global_batch") or train.get("global_batch") or global_batch
            if not isinstance(batch, (int, float)) or batch <= 0:
                return None
            steps *= batch
        elif time_attr not in ("step", "steps"):
            return None
        total += steps
    return total or None


def progress_of(trial: "Trial", time_attr: str, goal, finished: bool) -> tuple:
    """(budget, progress 0..1) of `trial` in `time_attr` units: toward its own job's budget
    (`job_budget`) capped at ASHA's `goal`; a finished trial ran its own budget, so it is full."""
    done = trial.last(time_attr)
    own = job_budget(trial.job, time_attr, trial.last("global_batch"))
    budget = min(goal, own) if goal and own else goal or own
    if finished:
        return (done if done is not None else budget), 1.0
    return budget, (min(1.0, done / budget) if budget and done is not None else None)


def planned_count(status: dict, submission: dict) -> int:
    """How many trials the sweep plans: `trials_planned` of its status file, else the trials the
    service planned when it submitted it."""
    planned = (status.get("info") or {}).get("trials_planned")
    return planned if isinstance(planned, int) else len(submission.get("planned") or [])


def note_fields(notes: dict, trial_id: str | None = None) -> dict:
    """{note, tags} of the study (or of one trial) from its notes.json, whatever the file holds."""
    part = notes.get("study") if trial_id is None else (notes.get("trials") or {}).get(trial_id)
    part = part if isinstance(part, dict) else {}
    tags = part.get("tags") if isinstance(part.get("tags"), list) else []
    return {"note": str(part.get("note") or ""), "tags": [str(t) for t in tags]}


def planned_rows(missing: int, planned, trials) -> list[dict]:
    """Rows for `missing` trials the sweep has not made yet: the planned hyperparameters
    (`planned`, one dict per trial, from the submission) not yet taken by one of `trials`."""
    if missing <= 0:
        return []
    left = [p for p in planned if isinstance(p, dict)] if isinstance(planned, list) else []
    for t in trials:
        match = next((i for i, p in enumerate(left) if all(t.params.get(k) == v for k, v in p.items())), None)
        if match is not None:
            left.pop(match)
    return [{"trial_id": f"{PLANNED_PREFIX}{i + 1}", "planned": True, "params": left[i] if i < len(left) else {},
             "state": PENDING, "ended": "", "error": "", "samples": None, "time_attr": "", "progress_value": None,
             "max_t": None, "budget": None, "progress": None, "n_evals": 0, "metric": None, "last_metric": None,
             "num_workers": None, "train_time_s": None, "stop_requested": False, "updated": None,
             "note": "", "tags": []}
            for i in range(missing)]


def imported_trials(trials: dict[str, Trial], table, seq: int, mtime_ns: int) -> bool:
    """Split imported records (`tail.Table`, read whole or appended to) into one trial per run
    (its `run_id`, as a run's trial is named; else its `trial_id`), each with its swept values from `hp.*` columns, in
    `trials` (replaced). True when rows changed."""
    if not (table.reset or table.appended):
        return False
    frame = table.frame
    key = next((c for c in ("run_id", "trial_id") if c in frame.columns and frame[c].notna().any()), None)
    groups = frame.groupby(frame[key].fillna("").astype(str), sort=False) if key else [("records", frame)]
    trials.clear()
    for name, rows in groups:
        trial = trials[name or "records"] = Trial(name or "records")
        rows = rows.reset_index(drop=True)
        trial.records, trial.seqs, trial.reset_seq, trial.updated_ns = rows, [seq] * len(rows), seq, mtime_ns
        hp = [c for c in rows.columns if c.startswith(HP_PREFIX)]
        first = json_rows(rows[hp].iloc[:1])[0] if hp and len(rows) else {}
        trial.params = {c[len(HP_PREFIX):]: v for c, v in first.items() if v is not None}
    return True
