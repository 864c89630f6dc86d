"""One trial of a study as the service holds it: its records as read so far, when each row was
first seen, and what the studies list and the study page ask of it (its best and last values,
its worker counts, its curve for the charts), worked out once per change of its rows rather than
once per request.
"""
from __future__ import annotations

import bisect

import numpy as np
import pandas as pd

from scaling_study.contract import METRICS

# Trial states (the study's own states are in `study`).
PENDING = "pending"
_NO_ROWS = pd.DataFrame()  # shared by every trial not read yet (frames here are never changed in place)


def decimate(frame: pd.DataFrame, column: str | None, limit: int) -> pd.DataFrame:
    """At most `limit` (>= 4) rows of `frame`, in order, that draw the same curve of `column`: the
    first and last rows, and in each of `limit // 2 - 1` equal runs of rows between them the row
    with the lowest and the one with the highest value (min/max decimation: every peak and dip
    stays, as a chart of that width would show it). A run without values keeps its first row."""
    n = len(frame)
    if n <= limit:
        return frame
    values = pd.Series(np.nan, index=frame.index)
    if column is not None and column in frame.columns:
        values = pd.to_numeric(frame[column], errors="coerce")
    inner = pd.Series(values.to_numpy(dtype=float, na_value=np.nan)[1:-1], index=np.arange(1, n - 1))
    runs = (inner.index.to_numpy() - 1) * max(1, limit // 2 - 1) // (n - 2)
    valued = inner.notna().to_numpy()
    by_run = inner[valued].groupby(runs[valued])
    first = pd.Series(inner.index).groupby(runs).first()
    keep = {0, n - 1, *by_run.idxmin(), *by_run.idxmax(), *first[first.index.difference(by_run.size().index)]}
    return frame.iloc[sorted(keep)]


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
