"""Plotly figures of the answers' sections. Drawing only: every number comes from the tables that
`answers.sections` computed. Each builder takes the section's tables (and the report, unused
here, for the signature `reports.figures` gives its builders)."""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from scaling_study.answers.tradeoff import tradeoff_curve

_COLORS = qualitative.Plotly
_HEIGHT = 420


def noise_figure(tables, report=None) -> go.Figure:
    """B_simple against samples trained, one line per run."""
    table = tables["noise_scale"]
    x = "samples" if "samples" in table.columns else "step"
    fig = go.Figure()
    for i, (run, part) in enumerate(table.groupby("run", sort=False)):
        fig.add_trace(go.Scatter(x=part[x], y=part["grad_noise_scale"], mode="lines+markers", name=run,
                                 line=dict(color=_COLORS[i % len(_COLORS)]),
                                 hovertemplate=f"{run}<br>{x} %{{x:.4g}}: B_simple %{{y:.4g}}<extra></extra>"))
    fig.update_layout(height=_HEIGHT, xaxis_title=f"{x} trained", yaxis_title="noise scale B_simple (samples)")
    return fig.update_yaxes(type="log")


def tradeoff_figure(tables, report=None) -> go.Figure:
    """Steps to target against batch per optimizer: measured best settings and the fitted curve,
    with B_crit and the measured B_noise marked."""
    points, fits = tables["steps_to_target"], tables["tradeoff_fit"]
    fig = go.Figure()
    for i, (optimizer, part) in enumerate(points.dropna(subset=["steps"]).groupby("optimizer", sort=True)):
        color = _COLORS[i % len(_COLORS)]
        fig.add_trace(go.Scatter(x=part["global_batch"], y=part["steps"], mode="markers", name=optimizer,
                                 marker=dict(color=color, size=9), legendgroup=optimizer,
                                 hovertemplate="B=%{x}: %{y:.4g} steps<extra>" + optimizer + "</extra>"))
        fit = fits[(fits["optimizer"] == optimizer) & fits["s_min"].notna()]
        if not fit.empty:
            _fit_trace(fig, fit.iloc[0], optimizer, color, row_index=i)
    fig.update_xaxes(type="log", title="global batch B")
    return fig.update_yaxes(type="log", title="steps to target").update_layout(height=_HEIGHT)


def _fit_trace(fig: go.Figure, row: pd.Series, optimizer: str, color: str, row_index: int = 0) -> None:
    curve = tradeoff_curve(row)
    fig.add_trace(go.Scatter(x=curve["global_batch"], y=curve["steps"], mode="lines", legendgroup=optimizer,
                             name=f"{optimizer}: S_min={row['s_min']:.3g}, B_crit={row['b_crit']:.3g}",
                             line=dict(color=color)))
    marks = ((row["b_crit"], "dash", "B_crit"), (row.get("b_noise_at_target"), "dot", "B_noise"))
    for j, (value, dash, label) in enumerate(marks):
        if value is not None and pd.notna(value) and 0 < value < float("inf"):
            fig.add_vline(x=value, line=dict(color=color, dash=dash, width=1))
            # Annotations on a log axis take log10(x) (plotly.js #1258; add_vline's own annotation
            # does not, which pushed the axis out to 1e128): placed by hand, stacked per optimizer.
            fig.add_annotation(x=math.log10(value), y=1 - 0.07 * (2 * row_index + j), yref="paper",
                               text=f"{label} {optimizer}", showarrow=False, xanchor="left",
                               font=dict(color=color))


def projection_figure(tables, report=None) -> go.Figure:
    """Projected weak-scaling efficiency and (where fitted) time to target against N, per
    optimizer and accumulation."""
    table = tables["projection"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Projected weak-scaling efficiency",
                                                        "Projected train time to target (s)"))
    for i, ((optimizer, k), part) in enumerate(table.groupby(["optimizer", "grad_accum"], sort=True)):
        name, color = f"{optimizer}, k={k}", _COLORS[i % len(_COLORS)]
        fig.add_trace(go.Scatter(x=part["num_workers"], y=part["efficiency"], mode="lines+markers", name=name,
                                 legendgroup=name, line=dict(color=color)), row=1, col=1)
        if "time_to_target_s" in part.columns and part["time_to_target_s"].notna().any():
            fig.add_trace(go.Scatter(x=part["num_workers"], y=part["time_to_target_s"], mode="lines+markers",
                                     name=name, legendgroup=name, showlegend=False, line=dict(color=color)),
                          row=1, col=2)
    ticks = sorted(table["num_workers"].unique())
    fig.update_xaxes(type="log", title="GPUs N", tickvals=ticks, ticktext=[f"{n:g}" for n in ticks])
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    return fig.update_layout(height=_HEIGHT)


# Section key -> builder, for `reports.figures._BUILDERS`; the recommendation is a table.
BUILDERS = {"noise": noise_figure, "tradeoff": tradeoff_figure, "projection": projection_figure}
