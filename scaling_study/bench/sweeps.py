"""`scaling-study bench sweeps`: the mixed 1- and 2-worker ASHA sweep, N times back to back.

Every sweep runs in this process on one Ray (the path where a leaked placement group outlives its
sweep and starves the next). Each gets `--hang-after` seconds; after it, the bench counts the
placement groups still holding resources (Ray's placement-group table, after giving Ray Train's
cleaner `--settle` seconds) and whether the cluster's CPUs are all free again. It prints a line
per sweep as it goes and a summary: hangs, leaks and time per sweep (min, median, max). The bar
is 0 hangs and 0 leaked placement groups in 20 sweeps. A hang stops the bench (the cluster is no
longer clean), printing what held the cluster.
"""
from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path

from scaling_study.bench import positive_int


def add_arguments(p) -> None:
    p.add_argument("space", nargs="?", default="search_spaces/stress_mixed_workers.yaml",
                   help="the search space to repeat (default: %(default)s)")
    p.add_argument("-n", "--sweeps", type=positive_int, default=20, metavar="N",
                   help="sweeps back to back (default: %(default)s)")
    p.add_argument("--hang-after", type=positive_int, default=300, metavar="S",
                   help="seconds after which a sweep counts as hung (default: %(default)s)")
    p.add_argument("--settle", type=positive_int, default=15, metavar="S",
                   help="seconds a sweep's placement groups may take to go after it ends (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the space (repeatable)")
    p.add_argument("--out", default="/tmp/scaling_study_bench_sweeps", help="where the sweeps and sweeps.json go")
    p.add_argument("--num-cpus", type=positive_int, default=2, help="CPUs of the local Ray (default: %(default)s)")


def held(table: dict) -> list[dict]:
    """The placement groups of `ray.util.placement_group_table()` that hold or wait for resources."""
    return [{"id": pid[:12], "state": info["state"], "bundles": list(info.get("bundles", {}).values())}
            for pid, info in table.items() if info.get("state") != "REMOVED"]


def settle(ray, total_cpu: float, seconds: float) -> list[dict]:
    """Wait up to `seconds` for every placement group to go and every CPU to be free; what is left."""
    deadline = time.monotonic() + seconds
    while True:
        left = held(ray.util.placement_group_table())
        if not left and ray.available_resources().get("CPU", 0) >= total_cpu - 1e-9:
            return []
        if time.monotonic() > deadline:
            return left or [{"id": "-", "state": "CPU not free", "bundles": [ray.available_resources()]}]
        time.sleep(0.25)


def run_one(args, i: int, stamp: int) -> dict:
    """One sweep under a watchdog: {"seconds", "hung", "leaked", "trials"}."""
    import ray

    from scaling_study.tune.sweep import run_sweep

    finished = threading.Event()
    hung = {}

    def watchdog():
        if not finished.wait(args.hang_after):
            hung["held"] = held(ray.util.placement_group_table())
            hung["free"] = ray.available_resources()
            import _thread
            _thread.interrupt_main()  # Tune stops the sweep on KeyboardInterrupt

    threading.Thread(target=watchdog, daemon=True).start()
    t0 = time.perf_counter()
    overrides = [*args.overrides, f"output.dir={args.out}", f"name=stress_{stamp}_{i:03d}"]
    trials = None
    try:
        _, grid, tables = run_sweep(args.space, overrides)
        trials = len(grid)
    except KeyboardInterrupt:
        if not hung:
            raise
    finally:
        finished.set()
    seconds = time.perf_counter() - t0
    if hung:
        return {"seconds": seconds, "hung": hung, "leaked": hung["held"], "trials": trials}
    total = ray.cluster_resources().get("CPU", 0)
    return {"seconds": seconds, "hung": None, "leaked": settle(ray, total, args.settle), "trials": trials}


def main(args) -> int:
    import ray

    from scaling_study.ray_env import ensure_ray

    stamp = int(time.time())
    ensure_ray(None, num_cpus=args.num_cpus)
    results = []
    try:
        for i in range(args.sweeps):
            r = run_one(args, i, stamp)
            results.append(r)
            state = "HUNG" if r["hung"] else "ok"
            print(f"[bench sweeps] {i + 1}/{args.sweeps}: {state}, {r['seconds']:.1f} s, "
                  f"{len(r['leaked'])} placement group(s) left{': ' + json.dumps(r['leaked']) if r['leaked'] else ''}",
                  flush=True)
            if r["hung"]:
                print(f"[bench sweeps] held at the hang: {json.dumps(r['hung'])}", flush=True)
                break
    finally:
        ray.shutdown()
    print(summary(args, results))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "sweeps.json").write_text(json.dumps(results, indent=1, default=str))
    return 0 if results and not any(r["hung"] or r["leaked"] for r in results) else 1


def summary(args, results: list[dict]) -> str:
    times = [r["seconds"] for r in results if not r["hung"]]
    hangs = sum(1 for r in results if r["hung"])
    leaks = sum(len(r["leaked"]) for r in results)
    spread = (f"{min(times):.1f} / {statistics.median(times):.1f} / {max(times):.1f} s" if times else "-")
    return (f"\n# scaling-study bench sweeps {args.space} -n {args.sweeps}\n"
            f"sweeps run: {len(results)} of {args.sweeps}; hangs: {hangs}; leaked placement groups: {leaks}; "
            f"time per sweep (min / median / max): {spread}")
