"""One trial of a study as the service holds it: its records as read so far, when each row was
first seen, and what the studies list and the study page ask of it (its best and last values,
its worker counts, its curve for the charts), worked out once per change of its rows rather than
once per request.
"""
from __future__ import annotations

import bisect

import pandas as pd

from scaling_study.contract import METRICS
from scaling_study.service.decimate import decimate

# Trial states (the study's own states are in `study`).
PENDING = "pending"
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
