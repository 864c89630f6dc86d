"""What a checked search space will run, before it runs: its planned trials (for the study page's
pending rows from the moment of submission) and the submit page's preview.
"""
from __future__ import annotations

MAX_PLANNED = 1024
"""At most this many planned trials travel with a submission (a sampled space may plan more)."""


def planned_trials(space) -> list[dict]:
    """One dict per trial Tune will make, in its order: the enumerated values of that trial (a
    sampled dimension has no value until Tune draws it)."""
    points = space.grid_points()
    return [dict(p) for p in points for _ in range(space.num_samples)][:MAX_PLANNED]


def preview(space) -> dict:
    """{trials, dimensions: {key: values or 'sampled'}, scheduler, max_concurrent_trials}."""
    axes = space.axes()
    dims = {k: axes.get(k, "sampled") for k in space.dimensions}
    dims.update({k: v for k, v in axes.items() if k not in dims})
    return {"trials": space.trial_count(), "dimensions": dims, "scheduler": space.scheduler.name,
            "max_concurrent_trials": space.max_concurrent_trials}
