"""Render a computed `Report` as one self-contained HTML page.

plotly.js is embedded once in the page head (the same script `include_plotlyjs=True` inlines),
so the page opens with no network; each figure is a div that calls it. Every chart is followed
by its tables (collapsed) and a link to the CSV file written next to the page.
"""
from __future__ import annotations

import html

import pandas as pd
import plotly.offline

from scaling_study.results import scaling
from scaling_study.reports.build import TABLES_DIR, Report, Section
from scaling_study.reports.figures import figure_for
from scaling_study.contract import metric_label

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
_OPEN_TABLES = {"trials", "recommendation"}  # shown expanded: the table is the section

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem;
       color: #222; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.4rem; border-bottom: 1px solid #ddd; }
.meta, .definition { color: #444; } .definition { font-size: .95rem; max-width: 60rem; }
.notes li { color: #8a5a00; } .skipped { color: #8a5a00; font-style: italic; }
.table-wrap { overflow-x: auto; max-height: 28rem; overflow-y: auto; }
table.data { border-collapse: collapse; font-size: .82rem; white-space: nowrap; }
table.data th, table.data td { border-bottom: 1px solid #eee; padding: .15rem .6rem; text-align: right; }
table.data th { position: sticky; top: 0; background: #fafafa; }
details { margin: .6rem 0; } summary { cursor: pointer; color: #245; }
"""


def render_dashboard(report: Report) -> str:
    """The whole page as a string: header, definitions, then every section in order."""
    body = [_header(report)] + [_section(s, report) for s in report.sections]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_e(report.title)}</title>\n<style>{_CSS}</style>\n"
        f"<script type=\"text/javascript\">{plotly.offline.get_plotlyjs()}</script>\n"
        "</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _header(report: Report) -> str:
    inputs = "".join(f"<li><code>{_e(s)}</code></li>" for s in report.inputs)
    target = _e(str(report.target)) if report.target else "none set"
    metric = _e(metric_label(report.metric)) if report.metric else "none recorded"
    return (
        f"<h1>{_e(report.title)}</h1>\n"
        f"<p class=\"meta\">Target: <b>{target}</b>. Plotted metric: <b>{metric}</b>.</p>\n"
        f"<p class=\"meta\">Built from:</p><ul class=\"meta\">{inputs}</ul>\n"
        f"<p class=\"definition\">{_e(scaling.DEFINITIONS['baseline'])}</p>"
    )


def _section(section: Section, report: Report) -> str:
    parts = [f"<section id=\"{section.key}\">", f"<h2>{_e(section.title)}</h2>",
             f"<p class=\"definition\">{_e(section.definition)}</p>"]
    if section.skipped:
        parts.append(f"<p class=\"skipped\">Not drawn: {_e(section.skipped)}</p></section>")
        return "\n".join(parts)
    if section.notes:
        parts.append("<ul class=\"notes\">" + "".join(f"<li>{_e(n)}</li>" for n in section.notes) + "</ul>")
    fig = figure_for(section, report)
    if fig is not None:
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, config=_PLOT_CONFIG,
                                 div_id=f"figure-{section.key}"))
    for name, table in section.tables.items():
        parts.append(_table(name, table, open_=section.key in _OPEN_TABLES))
    parts.append("</section>")
    return "\n".join(parts)


def _table(name: str, table: pd.DataFrame, open_: bool) -> str:
    """A collapsible HTML table with a link to its CSV file."""
    link = f"{TABLES_DIR}/{name}.csv"
    shown = _display(table)
    body = shown.to_html(index=False, escape=True, border=0, classes="data", na_rep="",
                         float_format=lambda v: f"{v:.4g}")
    summary = f"Table <code>{_e(name)}</code> ({len(table)} rows) — <a href=\"{_e(link)}\">{_e(link)}</a>"
    return f"<details{' open' if open_ else ''}><summary>{summary}</summary><div class=\"table-wrap\">{body}</div></details>"


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """Spell out runs that never reached the target (the CSV keeps NaN plus `reached`)."""
    if "reached" not in table.columns:
        return table
    shown = table.copy()
    for col in ("train_time_s", "wall_time_s"):
        if col in shown.columns:
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.4g}").astype(object)
            shown.loc[~shown["reached"].astype(bool), col] = "not reached"
    return shown


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
