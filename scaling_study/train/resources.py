"""What a run holds on the cluster, and how many runs fit at once. Ray-free: the cluster's
resources come in as the dict `ray.cluster_resources()` returns."""
from __future__ import annotations

import math
from collections.abc import Iterable

from scaling_study.config import Job

EPS = 1e-9  # 1.0 / 0.1 is 9.999...: a fraction that divides the cluster evenly must count whole


def per_worker_resources(job: Job) -> dict[str, float]:
    """The Ray resources of one worker: its CPUs, `scaling.resources_per_worker`, and with
    `scaling.use_gpu` one GPU unless that dict says how many."""
    s = job.scaling
    res = {"CPU": s.cpus_per_worker, **s.resources_per_worker}
    if s.use_gpu:
        res.setdefault("GPU", 1.0)
    return res


def run_resources(job: Job) -> dict[str, float]:
    """Everything one run of `job` holds while it trains: its workers' resources (local mode,
    `scaling.num_workers: 0`, trains one worker's worth in the calling process; an elastic run
    holds up to its most workers)."""
    workers = max(1, job.scaling.max_workers)
    return {name: amount * workers for name, amount in per_worker_resources(job).items() if amount}


def runs_that_fit(cluster: dict[str, float], runs: Iterable[dict[str, float]]) -> int:
    """How many runs can train at once on `cluster` when each may be the largest of `runs`
    (`run_resources` of each): for every resource a run needs (CPU, GPU, custom), how many runs'
    worth the cluster has, the least of them; at least 1 (a run that cannot fit at all is
    refused earlier, by `ray_env.check_fits`)."""
    fit = math.inf
    for run in runs:
        for name, amount in run.items():
            if amount > 0:
                fit = min(fit, math.floor(cluster.get(name, 0.0) / amount + EPS))
    return 1 if fit == math.inf else max(1, int(fit))
