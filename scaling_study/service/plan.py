"""What a checked search space will run, before it runs: its planned trials (for the study page's
pending rows from the moment of submission), the submit page's preview with an estimate of its
time from past sweeps of the same space, and the keys an override may name.
"""
from __future__ import annotations

import functools
import json
import statistics

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


DEFAULT_SPACE = "quickstart.yaml"
"""The space the submit page offers first: the small one the README's quickstart runs."""
MAX_PAST = 50
"""At most this many recent studies are looked at for an estimate."""


@functools.lru_cache(maxsize=1)
def override_keys() -> list[dict]:
    """Every key an override may name, from the configuration reference: the search space's own
    keys, and each job key under `set.` (the base job's values): [{key, type, default, doc}]."""
    from scaling_study.config import reference

    out = []
    for root, sections in reference.reference():
        prefix = "" if root.cls is reference.SpaceFile else "set."
        for section in sections:
            for k in section.keys:
                if prefix and k.key == "name":
                    continue  # the sweep names the trials' jobs itself
                out.append({"key": prefix + k.key, "type": k.type, "default": k.default,
                            "doc": " ".join((k.doc or "").split())})
    return [k for k in out if k["key"] != "set"]


def estimate(index, space: str, trials: int) -> dict | None:
    """Wall time to expect for `trials` trials of search space `space` (a file name), from the
    finished sweeps under the roots that ran the same file: each one's duration scaled by its
    trial count, the median taken. None when no past sweep ran it.
    {seconds, basis: [{study, trials, seconds}]}"""
    past = []
    for summary in index.studies(wait=False)[:MAX_PAST]:
        if summary["kind"] != "sweep" or summary["status"] != "finished":
            continue
        doc = _status(index, summary["id"])
        info = doc.get("info") or {}
        ran = str(info.get("space") or "").replace("\\", "/").rsplit("/", 1)[-1]
        started, ended, n = doc.get("started_at"), doc.get("heartbeat_at"), info.get("trials_planned")
        if ran == space and isinstance(n, int) and n > 0 and _number(started) and _number(ended) and ended > started:
            past.append({"study": summary["id"], "trials": n, "seconds": float(ended - started)})
    if not past:
        return None
    per_trial = statistics.median(p["seconds"] / p["trials"] for p in past)
    return {"seconds": per_trial * trials, "basis": past}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _status(index, sid: str) -> dict:
    """A study's steer/status.json, read through the roots' confinement ({} if unreadable)."""
    from scaling_study import layout
    from scaling_study.service.roots import NotFound, child, resolve

    try:
        root, _, loc = resolve(index.roots, sid)
        doc = json.loads(child(root, child(root, loc, layout.STEER_DIR), layout.STATUS_FILE).read_text())
    except (NotFound, OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}
