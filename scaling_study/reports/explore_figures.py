"""The figures of the exploring sections (`reports.explore`): parallel coordinates, importance,
best-so-far history and slices, drawn from the tables those sections computed."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from scaling_study.contract import metric_label
from scaling_study.reports.explore import OUTCOME, log_axis, param_name

_NOT_PARAMS = ("number", "run", OUTCOME, "samples", "train_time_s")
MAX_SLICES = 6


def _params(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in _NOT_PARAMS]


def _label(report) -> str:
    return metric_label(report.metric) if report.metric else "metric"


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)


def _dimension(table: pd.DataFrame, column: str) -> dict:
    """A parcoords axis: log10 values (ticks in the values themselves) for LRs and batches, codes
    for text values, the values as they are otherwise."""
    values = table[column]
    name = param_name(column)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all() and log_axis(column, values):
        shown = sorted(numbers.unique())
        ticks = shown if len(shown) <= 8 else [10.0 ** e for e in range(math.floor(math.log10(shown[0])),
                                                                     math.ceil(math.log10(shown[-1])) + 1)]
        return dict(label=f"{name} (log)", values=np.log10(numbers).tolist(),
                    tickvals=np.log10(ticks).tolist(), ticktext=[_fmt(t) for t in ticks])
    if numbers.notna().all():
        return dict(label=name, values=numbers.tolist())
    cats = sorted({str(v) for v in values})
    return dict(label=name, values=[cats.index(str(v)) for v in values], tickvals=list(range(len(cats))),
                ticktext=cats)


def parallel_figure(tables, report) -> go.Figure:
    table = tables["trial_outcomes"]
    dims = [_dimension(table, c) for c in _params(table)]
    dims.append(dict(label=_label(report), values=table[OUTCOME].tolist()))
    fig = go.Figure(go.Parcoords(line=dict(color=table[OUTCOME].tolist(), colorscale="Viridis", showscale=True,
                                           colorbar=dict(title=dict(text=_label(report)))), dimensions=dims))
    # The trial of each line, in order: a page that filters by the brushed ranges reads it here.
    fig.update_layout(height=440, margin=dict(l=80, r=40, t=60, b=30), meta={"runs": table["run"].tolist()})
    return fig


def importance_figure(tables, report) -> go.Figure:
    table = tables["param_importance"].iloc[::-1]
    fig = go.Figure(go.Bar(x=table["importance"], y=table["param"], orientation="h",
                           text=[f"{v:.2f}" for v in table["importance"]], textposition="auto"))
    fig.update_layout(height=120 + 40 * len(table), margin=dict(l=160, r=30, t=30, b=40),
                      xaxis=dict(title=dict(text="importance (PED-ANOVA, sums to 1)"), range=[0, 1]))
    return fig


def history_figure(tables, report) -> go.Figure:
    table = tables["best_so_far"]
    fig = go.Figure([
        go.Scatter(x=table["number"], y=table[OUTCOME], mode="markers", name="trial", text=table["run"],
                   hovertemplate="%{text}: %{y:.4g}<extra></extra>"),
        go.Scatter(x=table["number"], y=table["best_so_far"], mode="lines", line=dict(shape="hv"), name="best so far"),
    ])
    fig.update_layout(height=380, xaxis=dict(title=dict(text="trial (in the order made)")),
                      yaxis=dict(title=dict(text=_label(report))))
    return fig


def slices_figure(tables, report) -> go.Figure:
    table = tables["trial_outcomes"]
    params = _params(table)[:MAX_SLICES]
    fig = make_subplots(rows=1, cols=len(params), shared_yaxes=True,
                        subplot_titles=[param_name(c) for c in params])
    for i, col in enumerate(params, start=1):
        fig.add_trace(go.Scatter(x=table[col], y=table[OUTCOME], mode="markers", text=table["run"], showlegend=False,
                                 marker=dict(color=table["number"], colorscale="Blues", line=dict(width=.5)),
                                 hovertemplate="%{text}: %{x} → %{y:.4g}<extra></extra>"), row=1, col=i)
        numeric = pd.to_numeric(table[col], errors="coerce").notna().all()
        if log_axis(col, table[col]):
            shown = sorted(pd.to_numeric(table[col]).unique())  # ticks at the values swept, when few
            ticks = dict(tickvals=shown, ticktext=[_fmt(v) for v in shown]) if len(shown) <= 8 else {}
            fig.update_xaxes(type="log", row=1, col=i, **ticks)
        else:
            fig.update_xaxes(type="linear" if numeric else "category", row=1, col=i)
    fig.update_yaxes(title_text=_label(report), row=1, col=1)
    fig.update_layout(height=360)
    return fig


BUILDERS = {"parallel": parallel_figure, "importance": importance_figure, "history": history_figure,
            "slices": slices_figure}
