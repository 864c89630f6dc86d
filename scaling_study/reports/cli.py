"""`scaling-study report`: records -> one self-contained HTML dashboard plus its CSV tables.

Only argparse at import time: pandas and plotly load when the command runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    """Add the `report` subcommand to the `scaling-study` parser."""
    p = sub.add_parser(
        "report",
        help="scaling-efficiency, time-to-target and sweep dashboard (HTML + CSV tables)",
        description="Build one self-contained HTML dashboard (plotly embedded; opens offline) and "
                    "the CSV table behind every chart from run dirs, sweep dirs or records files.",
    )
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="run dir (records.csv), sweep dir (records.csv + trials.csv), or a records CSV/Parquet file")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="output directory, e.g. reports/NAME/ (replaced atomically if it holds a previous report)")
    p.add_argument("--target-metric", choices=("f1", "em", "mlm_acc", "eval_loss", "loss"),
                   help="metric of the time-to-target figures (default: the records' target_metric)")
    p.add_argument("--target", type=float, metavar="VALUE",
                   help="value to reach, in the metric's unit: F1/EM in percent (88), mlm_acc a fraction (0.6)")
    p.add_argument("--title", help="page title (default: 'Scaling study')")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Load, compute, render and write the report; print where it is and what was skipped."""
    from scaling_study.reports.build import build_report, write_report
    from scaling_study.reports.dashboard import render_dashboard
    from scaling_study.reports.records import load_results
    from scaling_study.reports.targets import resolve_target

    results = load_results(args.results)
    target = resolve_target(results.records, args.target_metric, args.target)
    report = build_report(results, target, args.title)
    page = write_report(report, render_dashboard(report), args.out)
    print(f"dashboard: {page}")
    print(f"tables:    {page.parent / 'tables'} ({len(report.tables())} CSV files)")
    for section in report.sections:
        if section.skipped:
            print(f"skipped:   {section.title}: {section.skipped}")
        for note in section.notes:
            print(f"note:      {note}")
    return 0
