"""Plotly figures drawn from the report's tables. Drawing only: every number comes from a table
that `build.py` computed and writes next to the dashboard."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from scaling_study.answers import figures as answers_figures
from scaling_study.reports import explore_figures
from scaling_study.results import scaling, targets
from scaling_study.contract import metric_label
from scaling_study.storage import as_path

_COLORS = qualitative.Plotly
_IDEAL = dict(color="#888", dash="dot", width=1.5)
_HEIGHT = 420


def figure_for(section, report) -> go.Figure | None:
    """The figure of a computed (not skipped) section, or None for a section shown as a table."""
    builder = _BUILDERS.get(section.key)
    return builder(section.tables, report) if builder else None


def group_labels(table: pd.DataFrame, keys: list[str]) -> pd.Series:
    """A legend label per row, naming only the keys that differ between the table's groups."""
    varying = [k for k in keys if k in table.columns and table[k].astype(str).nunique() > 1]
    if not varying:
        return pd.Series("all runs", index=table.index)
    return table.apply(lambda row: scaling.describe_group(row, varying), axis=1)


def _error(table: pd.DataFrame, centre: str, low: str, high: str) -> dict:
    """Asymmetric error bars spanning [low, high] around `centre` (hidden where no repeats)."""
    return dict(type="data", symmetric=False, array=(table[high] - table[centre]).to_numpy(),
                arrayminus=(table[centre] - table[low]).to_numpy(), thickness=1)


def _lines(fig, table, keys, x, y, err, row, col, hover, prefix="", first_color=0):
    """One line per group of `table` with min/max error bars; legend entries only in column 1."""
    labels = prefix + group_labels(table, keys)
    for i, (label, part) in enumerate(table.groupby(labels, sort=False)):
        color = _COLORS[(first_color + i) % len(_COLORS)]
        fig.add_trace(go.Scatter(
            x=part[x], y=part[y], mode="lines+markers", name=label, legendgroup=label,
            showlegend=col == 1, line=dict(color=color), error_y=_error(part, y, *err) if err else None,
            customdata=part[["n_runs", "baseline_workers"]].to_numpy(),
            hovertemplate=f"N=%{{x}}<br>{hover}=%{{y:.4g}}<br>runs=%{{customdata[0]}}, N0=%{{customdata[1]}}"
                          f"<extra>{label}</extra>",
        ), row=row, col=col)


def _ideal_efficiency(fig, table, row, col):
    n = sorted(table["num_workers"].unique())
    fig.add_trace(go.Scatter(x=n, y=[1.0] * len(n), mode="lines", name="ideal", line=_IDEAL,
                             legendgroup="ideal", showlegend=False), row=row, col=col)


def weak_figure(tables, report) -> go.Figure:
    if "weak_scaling" not in tables:
        return segments_figure(tables["segments"])
    table = tables["weak_scaling"]
    keys = scaling.present(table, scaling.WEAK_KEYS)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Throughput (samples/s)", "Weak-scaling efficiency"))
    _lines(fig, table, keys, "num_workers", "throughput_mean", ("throughput_min", "throughput_max"), 1, 1, "samples/s")
    for i, (_, part) in enumerate(table.groupby(group_labels(table, keys), sort=False)):
        fig.add_trace(go.Scatter(x=part["num_workers"], y=part["ideal_throughput"], mode="lines",
                                 name="ideal (linear)", legendgroup="ideal", showlegend=i == 0, line=_IDEAL), 1, 1)
    _lines(fig, table, keys, "num_workers", "efficiency", ("efficiency_min", "efficiency_max"), 1, 2, "efficiency")
    _ideal_efficiency(fig, table, 1, 2)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=2)
    return _workers_axes(fig, table["num_workers"])


def segments_figure(table) -> go.Figure:
    """Elastic runs with no fixed run to compare with: each segment's throughput and efficiency
    at its worker count, a run's segments joined in training order."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Throughput per segment (samples/s)", "Efficiency per segment"))
    for i, (run, part) in enumerate(table.groupby("run", sort=False)):
        color = _COLORS[i % len(_COLORS)]
        text = [f"steps {a}-{b}" for a, b in zip(part["first_step"], part["last_step"])]
        for col, y in ((1, "throughput"), (2, "efficiency")):
            fig.add_trace(go.Scatter(x=part["num_workers"], y=part[y], mode="lines+markers", name=run, text=text,
                                     legendgroup=run, showlegend=col == 1, line=dict(color=color),
                                     hovertemplate=f"N=%{{x}}<br>{y}=%{{y:.4g}}<br>%{{text}}<extra>{run}</extra>"),
                          row=1, col=col)
    _ideal_efficiency(fig, table, 1, 2)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=2)
    return _workers_axes(fig, table["num_workers"])


def strong_figure(tables, report) -> go.Figure:
    table = tables["strong_scaling"]
    keys = scaling.present(table, scaling.STRONG_KEYS) + ["samples"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Speedup T(N0)/T(N)", "Strong-scaling efficiency"))
    _lines(fig, table, keys, "num_workers", "speedup", ("speedup_min", "speedup_max"), 1, 1, "speedup")
    n = sorted(table["num_workers"].unique())
    n0 = table["baseline_workers"].min()
    fig.add_trace(go.Scatter(x=n, y=[v / n0 for v in n], mode="lines", name="ideal", line=_IDEAL), 1, 1)
    _lines(fig, table, keys, "num_workers", "efficiency", ("efficiency_min", "efficiency_max"), 1, 2, "efficiency")
    _ideal_efficiency(fig, table, 1, 2)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=2)
    return _workers_axes(fig, table["num_workers"])


def target_figure(tables, report) -> go.Figure:
    modes = [m for m in ("weak", "strong") if f"target_scaling_{m}" in tables]
    if not modes:
        return _target_bars(tables["time_to_target"], report.target)
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"Train time to {report.target} (s)", "Time-to-target efficiency"))
    colors_used = 0
    for mode in modes:
        table = tables[f"target_scaling_{mode}"].dropna(subset=["train_time_s_mean"])
        keys = targets.target_keys(table, mode)
        style = dict(prefix=f"{mode}: ", first_color=colors_used)
        _lines(fig, table, keys, "num_workers", "train_time_s_mean",
               ("train_time_s_min", "train_time_s_max"), 1, 1, "train time (s)", **style)
        _lines(fig, table, keys, "num_workers", "efficiency", None, 1, 2, "efficiency", **style)
        colors_used += group_labels(table, keys).nunique()
    every = pd.concat([tables[f"target_scaling_{m}"] for m in modes])
    _ideal_efficiency(fig, every, 1, 2)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=2)
    return _workers_axes(fig, every["num_workers"])


def _target_bars(table: pd.DataFrame, target) -> go.Figure:
    """Per-run train time to target when no group spans several worker counts."""
    reached = table[table["reached"]]
    fig = go.Figure(go.Bar(x=reached["run"], y=reached["train_time_s"], name="reached",
                           hovertemplate="%{x}: %{y:.4g} s<extra></extra>"))
    fig.update_layout(title=f"Train time to {target} per run (runs that reached it)", height=_HEIGHT)
    return fig.update_yaxes(title="train time (s)")


def curves_figure(tables, report) -> go.Figure:
    table = tables["metric_curves"]
    metric = table.columns[-1]
    fig = go.Figure()
    for i, (run, part) in enumerate(table.groupby("run", sort=False)):
        fig.add_trace(go.Scatter(x=part["train_time_s"], y=part[metric], mode="lines+markers", name=run,
                                 line=dict(color=_COLORS[i % len(_COLORS)]),
                                 hovertemplate=f"{run}<br>%{{x:.4g}} s: %{{y:.4g}}<extra></extra>"))
    if report.target is not None and report.target.metric == metric:
        fig.add_hline(y=report.target.value, line=_IDEAL, annotation_text=f"target {report.target}")
    fig.update_layout(height=_HEIGHT, xaxis_title="train time (s)", yaxis_title=metric_label(metric))
    return fig


def grid_figure(tables, report) -> go.Figure:
    grid = tables["final_metric_grid"]
    value = [c for c in grid.columns if c.startswith("final_")][0]
    optimizers = list(grid["optimizer"].unique())
    fig = make_subplots(rows=1, cols=len(optimizers), subplot_titles=optimizers, horizontal_spacing=0.08)
    zmin, zmax = grid[value].min(), grid[value].max()
    for col, optimizer in enumerate(optimizers, start=1):
        cells = grid[grid["optimizer"] == optimizer].pivot(index="global_batch", columns="lr", values=value)
        fig.add_trace(go.Heatmap(
            z=cells.to_numpy(), x=[f"{v:.3g}" for v in cells.columns], y=[f"{v:g}" for v in cells.index],
            zmin=zmin, zmax=zmax, coloraxis="coloraxis", texttemplate="%{z:.3g}",
            hovertemplate="LR %{x}, batch %{y}: %{z:.4g}<extra>" + optimizer + "</extra>",
        ), row=1, col=col)
        fig.update_xaxes(title=grid["lr_column"].iloc[0], type="category", row=1, col=col)
        fig.update_yaxes(title="global batch" if col == 1 else None, type="category", row=1, col=col)
    name = metric_label(value.removeprefix("final_"))
    return fig.update_layout(height=_HEIGHT, coloraxis=dict(colorscale="Viridis", colorbar_title=name))


def lifetimes_figure(tables, report) -> go.Figure:
    table = tables["trial_lifetimes"]
    # Trial ids repeat across sweeps: name the sweep's folder where they do.
    folder = table["source"].map(lambda s: as_path(s).parent.name)
    shared = table["trial_id"].duplicated(keep=False)
    table = table.assign(trial_id=table["trial_id"].where(~shared, folder + "/" + table["trial_id"]))
    fig = go.Figure()
    for stopped, name, color in ((False, "ran to the end", _COLORS[0]), (True, "stopped early", _COLORS[1])):
        part = table[table["stopped_early"] == stopped]
        fig.add_trace(go.Bar(y=part["trial_id"], x=part["samples"], orientation="h", name=name,
                             marker_color=color, customdata=part[["status"]].to_numpy(),
                             hovertemplate="%{y}: %{x:.4g} samples %{customdata[0]}<extra></extra>"))
    height = max(_HEIGHT, 22 * len(table) + 120)
    fig.update_layout(height=height, xaxis_title="samples trained", barmode="overlay")
    return fig.update_yaxes(type="category", autorange="reversed")


def _workers_axes(fig: go.Figure, workers: pd.Series) -> go.Figure:
    """Worker counts grow geometrically: a log x axis ticked at the counts that were run."""
    ticks = sorted(workers.unique())
    fig.update_xaxes(type="log", title="workers N", tickvals=ticks, ticktext=[f"{n:g}" for n in ticks])
    return fig.update_layout(height=_HEIGHT)


_BUILDERS = {
    "weak": weak_figure,
    "strong": strong_figure,
    "target": target_figure,
    "curves": curves_figure,
    "grid": grid_figure,
    "lifetimes": lifetimes_figure,
    **answers_figures.BUILDERS,
    **explore_figures.BUILDERS,
}
