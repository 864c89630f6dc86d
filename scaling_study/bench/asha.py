"""`scaling-study bench asha SPACE`: ASHA against the full grid on the same search space.

Runs the space in one invocation on the same Ray: once with every trial to the end (FIFO) and
`--repeats` times with ASHA, then compares the compute each spent (worker-seconds of training:
the sum over trials of workers x train time) and the best configuration each found. The target
is ASHA finding the grid's best configuration with <= 0.35 of its compute.

ASHA is asynchronous: the first trial to reach a rung is promoted with nothing to compare against,
and with trials running side by side which one gets there first is a race decided by
milliseconds. The same space can so cost ASHA a different share of the grid from one run to the
next; the repeats show that spread, and the verdict is on their median.
"""
from __future__ import annotations

import time

from scaling_study.bench import positive_int
from scaling_study.contract import HP_PREFIX


def add_arguments(p) -> None:
    p.add_argument("space", nargs="?", default="search_spaces/asha_vs_grid.yaml",
                   help="an all-grid search space with an ASHA scheduler (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the space (repeatable)")
    p.add_argument("--out", default="/tmp/scaling_study_bench_asha", help="where the sweeps go (a folder or an object-store URI)")
    p.add_argument("--repeats", type=positive_int, default=3, metavar="N",
                   help="ASHA runs against the one grid run; the verdict is on their median (default: %(default)s)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: local Ray)")



def _cost(sweep_dir, tables, metric: str, mode: str) -> dict:
    from scaling_study.storage import read_csv

    records = read_csv(tables["records"])  # local, or on the object store --out names
    last = records.sort_values("step").groupby("trial_id").tail(1)
    trials = read_csv(tables["trials"])
    hp = [c for c in records.columns if c.startswith(HP_PREFIX)]
    best = records.loc[records[metric].idxmax() if mode == "max" else records[metric].idxmin()]
    return {"trials": len(trials), "stopped": int(trials["stopped_early"].sum()),
            "worker_s": float((last["num_workers"] * last["train_time_s"]).sum()),
            "best": {k[3:]: _plain(best[k]) for k in hp}, "metric": float(best[metric])}


def _plain(value):
    """A numpy scalar as the Python value it holds (so the table prints 0.03, not np.float64(0.03))."""
    return value.item() if hasattr(value, "item") else value


def main(args) -> int:
    import ray

    from scaling_study.tune.space import load_space
    from scaling_study.tune.sweep import run_sweep

    stamp = int(time.time())
    space = load_space(args.space, args.overrides)
    metric, mode = space.scheduler.metric, space.scheduler.mode
    common = [*args.overrides, f"output.dir={args.out}"]
    runs = {}
    fifo = f"scheduler={{name: fifo, metric: {metric}, mode: {mode}}}"
    plan = [("grid (FIFO)", [fifo], "grid")] + [
        (f"ASHA #{i + 1}" if args.repeats > 1 else "ASHA", [], f"ASHA{i + 1}") for i in range(args.repeats)]
    try:
        for label, extra, tag in plan:
            t0 = time.perf_counter()
            sweep_dir, _, tables = run_sweep(args.space, [*common, *extra, f"name={space.name}_{tag}_{stamp}"],
                                             address=args.address)
            runs[label] = {**_cost(sweep_dir, tables, metric, mode), "wall_s": time.perf_counter() - t0}
    finally:
        ray.shutdown()
    print(verdict(args.space, runs, metric, mode))
    return 0


def verdict(space: str, runs: dict, metric: str, mode: str) -> str:
    """The table of runs (the grid's first) and the verdict on the ASHA runs' median."""
    import statistics

    grid = runs["grid (FIFO)"]
    lines = [f"\n# scaling-study bench asha {space}  (metric {metric}, {mode})",
             f"{'mode':12} {'trials':>6} {'stopped':>7} {'worker-s':>9} {'vs grid':>8} {'wall s':>7}  best {metric}  best config"]
    for label, r in runs.items():
        lines.append(f"{label:12} {r['trials']:6d} {r['stopped']:7d} {r['worker_s']:9.1f} "
                     f"{r['worker_s'] / grid['worker_s']:8.3f} {r['wall_s']:7.0f}  {r['metric']:.4f}  {r['best']}")
    asha = [r for label, r in runs.items() if label.startswith("ASHA")]
    share = statistics.median(r["worker_s"] / grid["worker_s"] for r in asha)
    found = sum(r["best"] == grid["best"] for r in asha)
    met = share <= 0.35 and found == len(asha)
    lines.append(f"ASHA found the grid's best configuration in {found} of {len(asha)} run(s); median compute "
                 f"{share:.2f} of the grid's (target <= 0.35): {'met' if met else 'NOT met'}")
    return "\n".join(lines)
