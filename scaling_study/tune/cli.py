"""`scaling-study submit FILE` and `scaling-study jobs status|logs|stop|list`: a cluster's Ray jobs.

Ray itself is imported only when a handler runs (see `scaling_study.cli`).
"""
from __future__ import annotations

from scaling_study.errors import UserError

_ADDRESS_HELP = ("the cluster's Job Submission API, e.g. http://HOST:8265 (default: $RAY_API_SERVER_ADDRESS, "
                 "$RAY_ADDRESS, else http://127.0.0.1:8265)")


def register(sub) -> None:
    _register_sweep(sub)
    _register_submit(sub)
    _register_jobs(sub)


def _register_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="run a search space (search_spaces/*.yaml) on Ray Tune with ASHA",
                       description="Run a sweep: one Ray Train run per trial, ASHA on samples seen. "
                                   "Results: OUTPUT_DIR/NAME/records.csv and trials.csv.")
    p.add_argument("space", help="search space YAML, e.g. search_spaces/lamb_lr_batch_small.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the space, e.g. --set num_samples=8 or --set set.train.steps=50")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted sweep of this space: finished trials are kept, unfinished "
                        "ones continue from their last checkpoint, ASHA's rungs are restored")
    p.set_defaults(func=_sweep)


def _sweep(args) -> int:
    from scaling_study.tune.sweep import run_sweep, summary

    sweep_dir, grid, tables = run_sweep(args.space, args.overrides, address=args.address, resume=args.resume)
    print(summary(sweep_dir, grid, tables))
    return 0


def _register_submit(sub) -> None:
    p = sub.add_parser("submit", help="run a search space (sweep) or a job on a Ray cluster as a Ray job",
                       description="Check FILE here, then submit it through Ray's Job Submission API with the "
                                   "project folder as working directory: a search space runs `scaling-study "
                                   "sweep`, a job `scaling-study run`, on the cluster.")
    p.add_argument("file", help="search_spaces/*.yaml or jobs/*.yaml, inside the project folder")
    p.add_argument("--address", default=None, help=_ADDRESS_HELP)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of FILE, e.g. --set study.mode=strong (repeatable)")
    p.add_argument("--storage", default=None,
                   help="where results go: a folder every node sees, or a URI such as s3://bucket/sweeps "
                        "(default: the file's output.dir, made absolute)")
    p.add_argument("--wait", action="store_true", help="stream the job's logs until it ends; fail unless it succeeds")
    p.set_defaults(func=_submit)


def _register_jobs(sub) -> None:
    p = sub.add_parser("jobs", help="follow Ray jobs submitted with `submit`: status, logs, stop, list")
    which = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    which.required = True
    for name, help_text in (("status", "the job's status and message"), ("logs", "the job's output so far"),
                            ("stop", "stop the job and wait until it has stopped")):
        q = which.add_parser(name, help=help_text)
        q.add_argument("job_id", help="the id `submit` printed (see `jobs list`)")
        q.add_argument("--address", default=None, help=_ADDRESS_HELP)
        if name == "logs":
            q.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
        q.set_defaults(func=_jobs)
    q = which.add_parser("list", help="every job the cluster knows, newest last")
    q.add_argument("--address", default=None, help=_ADDRESS_HELP)
    q.set_defaults(func=_jobs, job_id=None)


def _submit(args) -> int:
    from scaling_study.tune.submit import submit

    submit(args.file, args.address, overrides=args.overrides, storage=args.storage, wait=args.wait)
    return 0


def _jobs(args) -> int:
    from scaling_study.tune import submit as s

    address = args.address or s.default_address()
    client = s.connect(address)
    action = args.jobs_command
    try:
        if action == "list":
            jobs = sorted(client.list_jobs(), key=lambda info: info.start_time or 0)
            print("\n".join(s.describe(info) for info in jobs) or f"no jobs at {address}")
        elif action == "status":
            info = client.get_job_info(args.job_id)
            print(f"{args.job_id}: {info.status.value}" + (f" ({info.message})" if info.message else ""))
        elif action == "logs":
            if args.follow:
                return 0 if s.follow(client, args.job_id) == "SUCCEEDED" else 1
            print(client.get_job_logs(args.job_id), end="")
        elif action == "stop":
            print(f"{args.job_id}: {s.stop(client, args.job_id)}")
    except RuntimeError as exc:
        if "does not exist" in str(exc) or "404" in str(exc):
            raise UserError(f"no job {args.job_id!r} at {address}; `scaling-study jobs list` shows them") from None
        raise
    return 0
