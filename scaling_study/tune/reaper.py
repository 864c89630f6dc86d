"""Placement groups that nothing uses any more, removed by the sweep that made them.

A Ray Train controller that is being shut down (Tune stopped its trial: the trial's actor, the
controller's owner, is killed, and Ray ends the controller with SIGTERM) sees its workers die
with it, takes that for a worker failure, and starts the worker group again: it creates a new
placement group in its last milliseconds and exits before it can tell its placement-group
cleaner (seen in `bench sweeps`: a 1-CPU group CREATED 0.2 s after the controller got the signal,
its workers never made). A placement group made by an actor lives until that actor and its job
have both ended, so the group holds its CPUs until the sweep's driver exits, and the next trial
that needs them waits for ever.

Nothing inside the dying controller can be relied on, so the sweep's driver (the job that owns
every trial's placement groups, and lives as long as the sweep) removes them: every
`CHECK_EVERY_S` a Tune callback lists the job's placement groups that hold CPUs or GPUs (Ray Train
worker groups; a Tune trial's own group holds only memory here) and the live actors placed in
them, and removes a group that has been CREATED with no live actor in it for `GRACE_S`. A live
controller places its workers within a second of its group being ready, so the grace leaves it
untouched. Public Ray APIs only: the state API (`list_placement_groups`, `list_actors`) and
`remove_placement_group`.
"""
from __future__ import annotations

import logging
import time

from ray import tune

GRACE_S = 60.0
"""How long a placement group may hold resources with no live actor in it before it is removed."""
CHECK_EVERY_S = 10.0
"""How often the sweep looks (the state API is asked twice per look)."""
END_SETTLE_S = 2.0
"""At the sweep's end, the second look comes this long after the first."""
LIMIT = 10_000
"""Rows asked of the state API (its own ceiling, unless RAY_MAX_LIMIT_FROM_API_SERVER says more)."""
HELD = ("CPU", "GPU")
"""Resources whose groups are worker groups (a Tune trial's driver bundle holds none of them)."""

log = logging.getLogger(__name__)


def orphans(groups: list[dict], used: set[str], first_idle: dict[str, float], now: float,
            grace_s: float = GRACE_S) -> list[str]:
    """The ids of `groups` (each `{"id", "state", "resources"}`) to remove now: CREATED, holding CPUs
    or GPUs, with no live actor in them (`used`) since `first_idle[id]` at least `grace_s` ago.
    Updates `first_idle` (a group in use, or gone, is forgotten)."""
    idle = {g["id"] for g in groups if g["state"] == "CREATED" and g["id"] not in used
            and any(g["resources"].get(name, 0) > 0 for name in HELD)}
    for gid in list(first_idle):
        if gid not in idle:
            del first_idle[gid]
    for gid in idle:
        first_idle.setdefault(gid, now)
    return sorted(gid for gid in idle if now - first_idle[gid] >= grace_s)


def cluster_view(job_id: str) -> tuple[list[dict], set[str]]:
    """This job's placement groups and the ids of the groups live actors are placed in (state API,
    asked of the Ray this process is connected to: with several Rays on a machine, the state API
    left to find "the" Ray refuses to choose)."""
    import ray
    from ray.util.state import list_actors, list_placement_groups

    address = ray.get_runtime_context().gcs_address
    groups = []
    for pg in list_placement_groups(address=address, filters=[("creator_job_id", "=", job_id)], detail=True,
                                    limit=LIMIT):
        resources: dict[str, float] = {}
        for bundle in pg.bundles or []:
            for name, amount in (bundle.get("unit_resources") or {}).items():
                resources[name] = resources.get(name, 0.0) + float(amount)
        groups.append({"id": pg.placement_group_id, "state": pg.state, "resources": resources})
    actors = list_actors(address=address, filters=[("state", "!=", "DEAD")], detail=True, limit=LIMIT)
    return groups, {a.placement_group_id for a in actors if a.placement_group_id}


def remove(group_id: str) -> None:
    import ray
    from ray.util.placement_group import PlacementGroup

    ray.util.remove_placement_group(PlacementGroup(ray.PlacementGroupID.from_hex(group_id)))


class PlacementGroupReaper(tune.Callback):
    """The Tune callback that removes the sweep's orphaned worker groups (module docstring)."""

    def __init__(self, grace_s: float = GRACE_S, every_s: float = CHECK_EVERY_S):
        self.grace_s, self.every_s = grace_s, every_s
        self.first_idle: dict[str, float] = {}
        self.last = 0.0
        self.removed: list[str] = []
        self.before: set[str] = set()  # groups that were there when the sweep began: never ours
        self._warned = False

    def setup(self, **info):
        import ray

        try:
            self.before = {g["id"] for g in cluster_view(ray.get_runtime_context().get_job_id())[0]}
        except Exception:  # noqa: BLE001 - no state API: `look` says so
            self.before = set()

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.look(now)

    def on_experiment_end(self, trials, **info):
        # No trial runs any more: a worker group with no live actor is left over whatever its
        # age. A dying controller may still be creating one: look again a moment later.
        for pause in (0.0, END_SETTLE_S):
            time.sleep(pause)
            self.look(time.monotonic(), grace_s=0.0)

    def look(self, now: float, grace_s: float | None = None) -> None:
        import ray

        try:
            groups, used = cluster_view(ray.get_runtime_context().get_job_id())
        except Exception as exc:  # noqa: BLE001 - no state API (no dashboard): nothing to do here
            if not self._warned:
                self._warned = True
                log.warning("cannot list placement groups (%s); orphaned worker groups will not be removed", exc)
            return
        grace_s = self.grace_s if grace_s is None else grace_s
        groups = [g for g in groups if g["id"] not in self.before]
        for gid in orphans(groups, used, self.first_idle, now, grace_s):
            held = next(g["resources"] for g in groups if g["id"] == gid)
            why = f"no live actor in it for {grace_s:g} s" if grace_s else "no live actor in it at the sweep's end"
            print(f"[scaling_study] removing placement group {gid[:12]} "
                  f"({', '.join(f'{k} {v:g}' for k, v in held.items() if k in HELD)}): {why}", flush=True)
            try:
                remove(gid)
                self.removed.append(gid)
            except Exception as exc:  # noqa: BLE001 - removed meanwhile
                log.warning("could not remove placement group %s: %s", gid, exc)
            self.first_idle.pop(gid, None)
