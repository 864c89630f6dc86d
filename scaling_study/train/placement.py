"""Waiting for room for a run's workers, with an end: `scaling.placement_timeout_s`.

Ray Train's controller waits for its worker group's placement group for
`RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S` (60 s by default) and then, by default, tries again for
ever (`FailureConfig.controller_failure_limit=-1`). A run here gets as many of those attempts as
fit in its `placement_timeout_s` and then fails with a message that says what it asked for, what
the cluster has and what holds it (`explain`), so that a trial that cannot be placed fails alone
and its sweep goes on.
"""
from __future__ import annotations

import math
import os

START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
"""Ray Train's wait for one attempt to place a worker group (read by its controller)."""
DEFAULT_START_TIMEOUT_S = 60.0
"""Ray Train's default for `START_TIMEOUT_ENV`."""
SHOWN = 8  # placement groups listed in a message at most


def attempt_s() -> float:
    """Seconds one of Ray Train's placement attempts waits (the environment's, else Ray's default)."""
    try:
        value = float(os.environ.get(START_TIMEOUT_ENV, DEFAULT_START_TIMEOUT_S))
    except ValueError:
        return DEFAULT_START_TIMEOUT_S
    return value if math.isfinite(value) and value > 0 else DEFAULT_START_TIMEOUT_S


def controller_failure_limit(timeout_s: float) -> int:
    """Ray Train's `controller_failure_limit` for a wait of `timeout_s`: retries of one attempt
    each (the first attempt is not a retry), so that the run gives up within one attempt after
    `timeout_s`."""
    return max(0, math.ceil(timeout_s / attempt_s()) - 1)


def is_placement_timeout(error: BaseException | None) -> bool:
    """Whether a Train run failed because its workers found no room in time."""
    from scaling_study import compat

    return error is not None and compat.is_worker_group_start_timeout(getattr(error, "controller_failure", None))


def explain(job, error: BaseException | None) -> str | None:
    """The message for a run that failed for want of room (None for any other failure): what it
    asked for, for how long, what the cluster has and which placement groups hold it."""
    import ray

    from scaling_study.train.resources import per_worker_resources

    if not is_placement_timeout(error):
        return None
    s = job.scaling
    asked = ", ".join(f"{name}: {amount:g}" for name, amount in per_worker_resources(job).items() if amount)
    how = (f"the fewest of the elastic scaling.num_workers {s.num_workers}" if s.elastic
           else f"attempts of {attempt_s():g} s")
    lines = [f"scaling.placement_timeout_s: Ray found no room for {s.min_workers} worker(s) x {{{asked}}} "
             f"within {s.placement_timeout_s:g} s ({how}).",
             f"  the cluster has {_resources(ray.cluster_resources())}; free now: {_resources(ray.available_resources())}",
             *held_by(ray.util.placement_group_table()),
             "  free those resources, lower scaling.num_workers or the per-worker resources, or raise "
             "scaling.placement_timeout_s"]
    return "\n".join(lines)


def held_by(table: dict) -> list[str]:
    """A line per placement group that holds (or waits for) resources, from
    `ray.util.placement_group_table()`."""
    live = [(pid, info) for pid, info in table.items() if info.get("state") not in ("REMOVED", None)]
    lines = [f"  placement group {pid[:12]} ({info['state']}): "
             + " + ".join("{" + _resources(bundle) + "}" for bundle in info.get("bundles", {}).values())
             for pid, info in live[:SHOWN]]
    if len(live) > SHOWN:
        lines.append(f"  ... and {len(live) - SHOWN} more placement groups")
    return lines or ["  no placement group holds resources (other tasks or actors do)"]


def _resources(amounts: dict) -> str:
    shown = {k: v for k, v in sorted(amounts.items()) if k in ("CPU", "GPU") or not k.startswith(("node:", "memory", "object_store"))}
    return ", ".join(f"{k} {v:g}" for k, v in shown.items()) or "nothing"
