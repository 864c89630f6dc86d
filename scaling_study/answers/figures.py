"""Plotly figures of the answers' sections. Drawing only: every number comes from the tables that
`answers.sections` computed. Each builder takes the section's tables (and the report, unused
here, for the signature `reports.figures` gives its builders)."""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots


_COLORS = qualitative.Plotly
_HEIGHT = 420


def noise_figure(tables, report=None) -> go.Figure:
    """B_simple against samples trained, one line per run, coloured by optimizer (one legend
    entry each) so that a sweep's dozens of runs read as a few families."""
    table = tables["noise_scale"]
    x = "samples" if "samples" in table.columns else "step"
    family = "optimizer" if "optimizer" in table.columns else "run"
    colors = {name: _COLORS[i % len(_COLORS)] for i, name in enumerate(dict.fromkeys(table[family]))}
    fig, shown = go.Figure(), set()
    for run, part in table.groupby("run", sort=False):
        name = part[family].iloc[0]
        batch = f", B={part['global_batch'].iloc[0]:g}" if "global_batch" in part.columns else ""
        fig.add_trace(go.Scatter(x=part[x], y=part["grad_noise_scale"], mode="lines+markers", name=str(name),
                                 legendgroup=str(name), showlegend=name not in shown,
                                 line=dict(color=colors[name], width=1), marker=dict(size=4),
                                 hovertemplate=f"{run}{batch}<br>{x} %{{x:.4g}}: B_simple %{{y:.4g}}<extra></extra>"))
        shown.add(name)
    fig.update_layout(height=_HEIGHT, xaxis_title=f"{x} trained", yaxis_title="noise scale B_simple (samples)")
    values = table["grad_noise_scale"][table["grad_noise_scale"] > 0]
    ticks = _ticks_125(float(values.min()), float(values.max())) if len(values) else None
    return fig.update_yaxes(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks] if ticks else None)


def tradeoff_figure(tables, report=None) -> go.Figure:
    """Steps to target against batch per optimizer: measured best settings (bars: the interval in
    which the runs crossed the target; hollow where the best LR lies on its grid's edge), the fitted curve with its 95 % band (dashed beyond the
    measured batches), B_crit and the measured B_noise marked, perfect scaling (steps ∝ 1/B from
    the smallest batch that reached the target), and censored batches (× along the top)."""
    points, fits = tables["steps_to_target"], tables["tradeoff_fit"]
    curve = tables.get("tradeoff_curve")
    reached = points.dropna(subset=["steps"])
    top = float(reached["steps_hi"].max()) * 1.6 if not reached.empty else 1.0
    fig = go.Figure()
    for i, (optimizer, part) in enumerate(points.groupby("optimizer", sort=True)):
        color, done = _COLORS[i % len(_COLORS)], part.dropna(subset=["steps"])
        edge = done["lr_edge"].fillna("").ne("") if "lr_edge" in done.columns else pd.Series(False, index=done.index)
        fig.add_trace(go.Scatter(
            x=done["global_batch"], y=done["steps"], mode="markers", name=optimizer, legendgroup=optimizer,
            # hollow: the best LR was on its grid's edge, so the point may lie above what a wider grid gives
            marker=dict(color=color, size=9, symbol=["circle-open" if e else "circle" for e in edge]),
            error_y=dict(type="data", symmetric=False, array=done["steps_hi"] - done["steps"],
                         arrayminus=done["steps"] - done["steps_lo"], color=color, thickness=1),
            hovertemplate="B=%{x}: %{y:.4g} steps<extra>" + optimizer + "</extra>"))
        missed = part[part["steps"].isna()]
        if not missed.empty:
            fig.add_trace(go.Scatter(x=missed["global_batch"], y=[top] * len(missed), mode="markers",
                                     name=f"{optimizer}: not reached (censored)", legendgroup=optimizer,
                                     marker=dict(color=color, size=11, symbol="x-thin-open", line=dict(width=2)),
                                     hovertemplate="B=%{x}: no setting reached the target<extra>"
                                                   + optimizer + "</extra>"))
        if not done.empty:
            first = done.loc[done["global_batch"].idxmin()]
            batches = sorted(part["global_batch"].unique())
            fig.add_trace(go.Scatter(
                x=batches, y=[first["steps"] * first["global_batch"] / b for b in batches], mode="lines",
                name=f"{optimizer}: perfect scaling", legendgroup=optimizer,
                line=dict(color=color, dash="dot", width=1), hoverinfo="skip"))
        fit = fits[(fits["optimizer"] == optimizer) & fits["s_min"].notna()]
        if not fit.empty and curve is not None:
            _fit_traces(fig, fit.iloc[0], curve[curve["optimizer"] == optimizer], optimizer, color, i)
    batches = sorted(points["global_batch"].unique())
    if len(batches) > 8:  # a published table's many batches: 1-2-5 ticks, not one per batch
        batches = _ticks_125(min(batches), max(batches) * 4)
    fig.update_xaxes(type="log", title="global batch B", tickvals=batches, ticktext=[f"{b:g}" for b in batches])
    drawn = [y for trace in fig.data if trace.y is not None for y in trace.y if y > 0]
    ticks = _ticks_125(min(drawn, default=1.0) / 1.3, top)
    return fig.update_yaxes(type="log", title="steps to target", tickvals=ticks,
                            ticktext=[f"{t:g}" for t in ticks]).update_layout(height=_HEIGHT)


def _ticks_125(low: float, high: float) -> list[float]:
    """1-2-5 values spanning [low, high]: readable ticks for a log axis."""
    ticks, decade = [], 10.0 ** math.floor(math.log10(max(low, 1e-12)))
    while decade <= high:
        ticks += [m * decade for m in (1, 2, 5) if low <= m * decade <= high]
        decade *= 10
    return ticks


def _band(fig: go.Figure, x, lo, hi, color: str, group: str, row=None, col=None) -> None:
    """A shaded interval between `lo` and `hi` (two traces, the second filled to the first)."""
    kw = dict(row=row, col=col) if row else {}
    fig.add_trace(go.Scatter(x=list(x), y=list(hi), mode="lines", line=dict(width=0), legendgroup=group,
                             showlegend=False, hoverinfo="skip"), **kw)
    fig.add_trace(go.Scatter(x=list(x), y=list(lo), mode="lines", line=dict(width=0), fill="tonexty",
                             fillcolor=_translucent(color), legendgroup=group, showlegend=False,
                             hoverinfo="skip"), **kw)


def _translucent(color: str) -> str:
    r, g, b = (int(color.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},0.15)"


def _fit_traces(fig: go.Figure, row: pd.Series, curve: pd.DataFrame, optimizer: str, color: str,
                row_index: int = 0) -> None:
    _band(fig, curve["global_batch"], curve["steps_lo"], curve["steps_hi"], color, optimizer)
    for inside, dash in ((True, "solid"), (False, "dash")):
        part = curve[curve["in_range"] == inside]
        if inside is False:  # join the extrapolated part to the measured one
            part = pd.concat([curve[curve["in_range"]].tail(1), part])
        fig.add_trace(go.Scatter(
            x=part["global_batch"], y=part["steps"], mode="lines", legendgroup=optimizer,
            showlegend=inside, line=dict(color=color, dash=dash),
            name=f"{optimizer}: S_min={row['s_min']:.3g}, B_crit={row['b_crit']:.3g} "
                 f"[{row.get('b_crit_lo', math.nan):.3g}, {row.get('b_crit_hi', math.nan):.3g}]"))
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
    """Projected weak-scaling efficiency and (where fitted) time to target against N with its 95 %
    band, per optimizer and accumulation; dashed where the batch lies beyond the measured ones."""
    table = tables["projection"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Projected weak-scaling efficiency",
                                                        "Projected train time to target (s)"))
    for i, ((optimizer, k), part) in enumerate(table.groupby(["optimizer", "grad_accum"], sort=True)):
        name, color = f"{optimizer}, k={k}", _COLORS[i % len(_COLORS)]
        fig.add_trace(go.Scatter(x=part["num_workers"], y=part["efficiency"], mode="lines+markers", name=name,
                                 legendgroup=name, line=dict(color=color)), row=1, col=1)
        if "time_to_target_s" in part.columns and part["time_to_target_s"].notna().any():
            _band(fig, part["num_workers"], part["time_lo_s"], part["time_hi_s"], color, name, row=1, col=2)
            for inside, dash in ((True, "solid"), (False, "dash")):
                shown = part[part["in_range"] == inside]
                fig.add_trace(go.Scatter(x=shown["num_workers"], y=shown["time_to_target_s"], mode="lines+markers",
                                         name=name + ("" if inside else " (extrapolated)"), legendgroup=name,
                                         showlegend=False, line=dict(color=color, dash=dash)), row=1, col=2)
    ticks = sorted(table["num_workers"].unique())
    fig.update_xaxes(type="log", title="GPUs N", tickvals=ticks, ticktext=[f"{n:g}" for n in ticks])
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(type="log", row=1, col=2)
    if "time_to_target_s" not in table.columns or not table["time_to_target_s"].notna().any():
        # Said where the chart would be, not left as an empty frame.
        fig.add_annotation(text=NO_TIME_TO_TARGET, xref="x2 domain", yref="y2 domain", x=0.5, y=0.5,
                           showarrow=False, align="center")
        fig.update_xaxes(visible=False, row=1, col=2)
        fig.update_yaxes(visible=False, row=1, col=2)
    return fig.update_layout(height=_HEIGHT)


NO_TIME_TO_TARGET = ("No time to target to project: it needs the steps to the target<br>at two or more "
                     "batches (runs that reached a target), fitted<br>in the critical-batch section above.")


# Section key -> builder, for `reports.figures._BUILDERS`; the recommendation is a table.
BUILDERS = {"noise": noise_figure, "tradeoff": tradeoff_figure, "projection": projection_figure}
