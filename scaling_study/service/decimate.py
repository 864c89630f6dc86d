"""Curves with more points than a chart can show, cut down to what it shows: min/max decimation.

A study's detail sends each trial's curve with at most `study.CURVE_POINTS` rows, and the
report's figures their traces with at most as many points; the CSV tables keep every row.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


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


def thin_figure(figure: dict, limit: int) -> dict:
    """`figure` (plotly JSON) with each trace of more than `limit` points decimated along its `y`
    (`decimate`): every per-point array of the trace (x, y, text, customdata, marker colours)
    keeps the same points. Other traces are left as they are."""
    for trace in figure.get("data", []):
        y = trace.get("y")
        if not isinstance(y, list) or len(y) <= limit:
            continue
        keep = decimate(pd.DataFrame({"y": y}), "y", limit).index.to_numpy()
        _take(trace, len(y), keep)
    return figure


def _take(node: dict, n: int, keep: np.ndarray) -> None:
    for key, value in node.items():
        if isinstance(value, list) and len(value) == n:
            node[key] = [value[i] for i in keep]
        elif isinstance(value, dict):
            _take(value, n, keep)
