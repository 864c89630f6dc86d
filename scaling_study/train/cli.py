"""`scaling-study run JOB.yaml`: one run of one job on Ray Train."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("run", help="run one job (a jobs/*.yaml) on Ray Train",
                       description="Run one job on Ray Train: embedded local Ray by default, or a cluster at --address.")
    p.add_argument("job", help="job YAML file, e.g. jobs/quickstart.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job key, e.g. --set optimizer.lr=2e-3 (repeatable)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--out", default=None, help="output folder for runs (overrides output.dir)")
    p.add_argument("--name", default=None, help="run name (overrides name); re-running a name continues it")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from scaling_study.check import check_job

    overrides = list(args.overrides)
    labels = {}  # the override each flag became -> the flag, for error messages
    if args.out:
        overrides.append(f"output.dir={args.out}")
        labels[overrides[-1]] = f"--out {args.out}"
    if args.name:
        overrides.append(f"name={args.name}")
        labels[overrides[-1]] = f"--name {args.name}"
    job = check_job(args.job, overrides, labels)  # every check that needs no cluster, before Ray starts

    from scaling_study.train.driver import run_job

    where = f"{args.job} (--out {args.out}): output.dir" if args.out else f"{args.job}: output.dir"
    result = run_job(job, address=args.address, output_key=where)
    _summary(job, result)
    return 0


def _summary(job, result) -> None:
    from scaling_study.contract import PRIMARY_METRIC
    from scaling_study.layout import JOB_FILE, RECORDS

    rec = result.records
    print(f"\nrun {job.name!r} finished: {len(rec)} evaluations")
    if len(rec):
        last = rec.iloc[-1]
        metric = PRIMARY_METRIC[job.task]
        print(f"  final: step {int(last['step'])}, {metric} {last[metric]:.3f}, best {rec[metric].max():.3f}, "
              f"train {last['train_time_s']:.0f}s, wall {last['wall_time_s']:.0f}s")
        if job.eval.target is not None:
            hit = rec[rec["target_reached"].astype(bool)]
            t = job.eval.target
            when = f"at train time {hit.iloc[0]['train_time_s']:.0f}s (step {int(hit.iloc[0]['step'])})" if len(hit) else "not reached"
            print(f"  target {t.metric} >= {t.value:g}: {when}")
    print(f"  records:     {result.run_dir / RECORDS}")
    print(f"  checkpoint:  {result.checkpoint}")
    print(f"  job:         {result.run_dir / JOB_FILE}")
