"""`scaling-study report`: records -> one self-contained HTML dashboard plus its CSV tables;
`scaling-study export`: the best trial of a sweep -> a job YAML that runs as it is.

Only argparse at import time: pandas and plotly load when the command runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from scaling_study.answers.links import ALGORITHMS, DEFAULT_ALGORITHM, DEFAULT_CLUSTER, LINKS
from scaling_study.answers.device import NAMED as NAMED_DEVICES  # no numpy or pandas: --help stays fast
from scaling_study.contract import METRICS

METRIC_NAMES = tuple(METRICS)
PLAN_FLAGS = {"cluster": "--cluster", "grad_bytes": "--grad-bytes", "algorithm": "--algorithm",
              "overlap": "--overlap", "device_profile": "--device-profile"}


def register(sub) -> None:
    """Add the `report` subcommand to the `scaling-study` parser."""
    p = sub.add_parser(
        "report",
        help="scaling-efficiency, time-to-target and sweep dashboard (HTML + CSV tables)",
        description="Build one self-contained HTML dashboard (plotly embedded; opens offline) and "
                    "the CSV table behind every chart from run dirs, sweep dirs or records files: "
                    "scaling, time to target, steps to target against batch (critical batch), noise "
                    "scale, scaling projected to 8-1024 GPUs and a recommendation per worker count.",
    )
    p.add_argument("results", nargs="*", metavar="RESULTS",
                   help="run dir (records.csv), sweep dir (records.csv + trials.csv), or a records CSV/Parquet file")
    p.add_argument("--steps-to-target", type=Path, metavar="FILE.csv",
                   help="instead of RESULTS: a table of steps to a target from elsewhere (columns batch, samples "
                        "or steps, optional run and optimizer): the critical-batch fit, its intervals, a held-out "
                        "check and the chart")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="output directory, e.g. reports/NAME/ (replaced atomically if it holds a previous report)")
    p.add_argument("--target-metric", choices=METRIC_NAMES,
                   help="metric of the time-to-target figures (default: the records' target_metric)")
    p.add_argument("--target", type=float, metavar="VALUE",
                   help="value to reach, in the metric's unit: F1/EM in percent (88), mlm_acc a fraction (0.6)")
    p.add_argument("--title", help="page title (default: 'Scaling study')")
    add_plan_flags(p)
    p.set_defaults(func=main)
    register_export(sub)


def main(args: argparse.Namespace) -> int:
    """Load, compute, render and write the report; print where it is and what was skipped."""
    from scaling_study.errors import UserError
    from scaling_study.reports.build import build_report, write_report
    from scaling_study.reports.dashboard import render_dashboard
    from scaling_study.results.records import load_results
    from scaling_study.results.targets import resolve_target

    if args.steps_to_target is not None:
        report = _steps_report(args)
    else:
        if not args.results:
            raise UserError("give RESULTS (run dirs, sweep dirs or records files) or --steps-to-target FILE.csv")
        plan = plan_options(args)  # a bad flag fails before anything is read
        results = load_results(args.results)
        target = resolve_target(results.records, args.target_metric, args.target)
        report = build_report(results, target, args.title, plan)
    page = write_report(report, render_dashboard(report), args.out)
    print(f"dashboard: {page}")
    print(f"tables:    {page.parent / 'tables'} ({len(report.tables())} CSV files)")
    for section in report.sections:
        if section.skipped:
            print(f"skipped:   {section.title}: {section.skipped}")
        for note in section.notes:
            print(f"note:      {note}")
    return 0


def _steps_report(args: argparse.Namespace):
    """The report of a plain steps-to-target table; the records' flags do not apply to it."""
    from scaling_study.errors import UserError
    from scaling_study.reports.build import build_steps_report

    given = [flag for flag, value in (("RESULTS", args.results), ("--target-metric", args.target_metric),
                                      ("--target", args.target)) if value]
    given += [flag for key, flag in PLAN_FLAGS.items() if getattr(args, key) is not None]
    if given:
        raise UserError(f"--steps-to-target {args.steps_to_target}: drop {', '.join(given)}: the table gives "
                        "the steps to its own target, and nothing is projected from it")
    return build_steps_report(args.steps_to_target, args.title)


def add_plan_flags(p) -> None:
    """The flags of the plan a projection is made with (`answers.plan.PlanOptions`)."""
    intra = [name for name in LINKS if not name.startswith("net")]
    nets = [name for name in LINKS if name.startswith("net")]
    g = p.add_argument_group("projection to many GPUs (and the recommendation where nothing was measured)")
    g.add_argument("--cluster", metavar="INTRA[+KxNET]",
                   help=f"8-GPU nodes on link INTRA ({', '.join(intra)}) joined by K NICs of NET "
                        f"({', '.join(nets)}) each; default: {DEFAULT_CLUSTER} (a DGX H100/H200)")
    g.add_argument("--grad-bytes", type=float, metavar="BYTES",
                   help="bytes all-reduced per step: trainable parameters x 4 (fp32 gradients); default: "
                        "counted from the records' model (a named size, 'default' or a local checkpoint)")
    g.add_argument("--algorithm", choices=ALGORITHMS,
                   help=f"all-reduce across nodes (default: {DEFAULT_ALGORITHM}; docs/answers.md compares them)")
    g.add_argument("--overlap", type=float, metavar="FRACTION",
                   help="fraction of the all-reduce hidden behind backward, 0 to 1 (default: 0, none)")
    g.add_argument("--device-profile", metavar="FILE|NAME",
                   help="the compute of the GPU projected: a YAML file from `scaling-study bench profile`, or "
                        f"a named profile derived from FLOPs per sample ({', '.join(NAMED_DEVICES)}); required "
                        "to project records measured on CPUs")


def plan_options(args: argparse.Namespace):
    """The `PlanOptions` of the flags given (the others keep its defaults); UserError naming a bad flag."""
    from scaling_study.answers.plan import PlanOptions

    return PlanOptions(**{key: getattr(args, key) for key in PLAN_FLAGS if getattr(args, key) is not None})


def register_export(sub) -> None:
    """Add the `export` subcommand to the `scaling-study` parser."""
    p = sub.add_parser(
        "export",
        help="write the best trial of a sweep, or the recommendation for N workers, as a job YAML",
        description="Pick the best run of sweep (or run) directories and write its job as a YAML "
                    "that `scaling-study run` runs as it is; --workers rescales it with the "
                    "sweep's LR rule, keeping the per-worker batch (weak) or the global batch (strong). "
                    "--recommend --workers N writes instead the report's recommendation for N "
                    "workers: the run at N that reached the target fastest, as it ran, or else the "
                    "projected optimizer, batch, accumulation and pinned peak LR applied to the job "
                    "of the run they come from.",
    )
    p.add_argument("results", nargs="+", metavar="SWEEP_DIR",
                   help="sweep dir (records.csv, trials.csv, trials/<id>/job.yaml) or run dir (records.csv, job.yaml)")
    p.add_argument("--metric",
                   help=f"{', '.join(METRIC_NAMES)}: best value over a run's evaluations; "
                        "time_to_target: the first run to reach the target (required without --recommend)")
    p.add_argument("--mode", choices=("max", "min"),
                   help="whether higher or lower is better (default: the metric's own; loss: min)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE",
                   help="the job YAML to write, e.g. jobs/best.yaml (an existing file is replaced)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="rescale the job to N workers (0: one rank in the driver process); with "
                        "--recommend: the worker count to recommend for")
    p.add_argument("--recommend", action="store_true",
                   help="with --workers N: write the recommendation for N workers (the report's "
                        "'Recommendation per worker count') instead of rescaling the best trial")
    p.add_argument("--scaling", choices=("weak", "strong"),
                   help="with --workers: keep the per-worker batch (weak) or the global batch "
                        "(strong); default: the job's train.scaling_mode, else weak")
    p.add_argument("--target-metric", choices=METRIC_NAMES,
                   help="with --metric time_to_target or --recommend: the metric to reach (default: the records' target)")
    p.add_argument("--target", type=float, metavar="VALUE",
                   help="with --metric time_to_target or --recommend: the value to reach, F1/EM in "
                        "percent, mlm_acc a fraction")
    p.add_argument("--name", help="the exported job's name (default: best_<sweep>, plus _<N>w when "
                                  "rescaled; recommended_<sweep>_<N>w with --recommend)")
    add_plan_flags(p)
    p.set_defaults(func=export_main)


def export_main(args: argparse.Namespace) -> int:
    """Export the chosen trial's job; print the trial, its result, the changes and the file."""
    from scaling_study.errors import UserError
    from scaling_study.reports.export import TIME_TO_TARGET, export

    if args.recommend:
        return _print_export(_export_recommended(args))
    if args.metric is None:
        raise UserError(f"--metric is required: one of {', '.join([*METRIC_NAMES, TIME_TO_TARGET])} "
                        "(or --recommend --workers N)")
    given = [flag for key, flag in PLAN_FLAGS.items() if getattr(args, key) is not None]
    if given:
        raise UserError(f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to --recommend "
                        "(a projection); the best trial's export does not project")
    if args.scaling and args.workers is None:
        raise UserError("--scaling applies to a rescale: give --workers N with it")
    if (args.target_metric or args.target is not None) and args.metric != TIME_TO_TARGET:
        raise UserError(f"--target-metric/--target apply to --metric {TIME_TO_TARGET}, not --metric {args.metric}")
    done = export(args.results, args.metric, args.mode, args.out, workers=args.workers,
                  scaling=args.scaling, target_metric=args.target_metric, target=args.target, name=args.name)
    return _print_export(done)


def _export_recommended(args: argparse.Namespace):
    from scaling_study.errors import UserError
    from scaling_study.reports.export import TIME_TO_TARGET
    from scaling_study.reports.recommended import export_recommended

    if args.workers is None:
        raise UserError("--recommend needs --workers N: the worker count to recommend for")
    for flag, value in (("--metric", args.metric), ("--mode", args.mode), ("--scaling", args.scaling)):
        if value is not None and not (flag == "--metric" and value == TIME_TO_TARGET):
            raise UserError(f"{flag} {value}: does not apply to --recommend, which chooses by time to "
                            "the target and sets the batch itself; drop it")
    plan = plan_options(args)
    return export_recommended(args.results, args.out, workers=args.workers, target_metric=args.target_metric,
                              target=args.target, plan=plan, name=args.name)


def _print_export(done) -> int:
    print(f"trial:   {done.trial_id} ({done.job_file})")
    print(f"result:  {done.result}")
    for i, line in enumerate(done.changes):
        print(f"{'changed:' if i == 0 else '':8} {line}")
    for note in done.notes:
        print(f"note:    {note}")
    print(f"wrote:   {done.path}{' (replaced the file that was there)' if done.replaced else ''}")
    print(f"run it:  scaling-study run {done.path}")
    return 0
