"""Turning a base job plus one sampled point of a search space into a job mapping.

Pure functions over plain dicts (the YAML form of a job), so that keys the base file leaves out
stay out: `train.global_batch` and `train.grad_accum` are two ways of saying one thing, and
which one a file gives decides what a swept value means.

The order is fixed: the base job, then the space's `set`, then `lr_scaling`, then the sampled
parameters, then the scaling study's batch arithmetic (`weak` / `strong`). The result is checked
by the job schema afterwards (`scaling_study.config.job_from_dict`).
"""
from __future__ import annotations

import copy
from typing import Any

from scaling_study.config import Phase
from scaling_study.config.load import set_dotted

WORKERS_KEY = "scaling.num_workers"
SEED_KEY = "train.seed"
# Keys of the batch arithmetic: a randint over one of them is checked at every value it can take.
BATCH_KEYS = ("train.per_worker_batch", "train.global_batch", "train.grad_accum", WORKERS_KEY)


class StudyError(ValueError):
    """The scaling study cannot place a phase's batch on a worker count (raised with the reason)."""


def drop_dotted(data: dict, key: str) -> None:
    """Remove `a.b.c` from `data` if it is there."""
    *parents, last = key.split(".")
    node: Any = data
    for part in parents:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(last, None)


def assemble(base: dict, fixed: dict, lr_rule: tuple[str, int] | None, params: dict) -> dict:
    """base + `set` + LR rule + sampled params, keeping `global_batch` / `grad_accum` coherent.

    When the sweep gives one of `train.global_batch` / `train.grad_accum` (in `set` or as a
    dimension) and not the other, the base's value of the other is dropped: the swept value is
    the one the user means, and the base's would contradict it.
    """
    data = copy.deepcopy(base)
    for key, value in fixed.items():
        set_dotted(data, key, value)
    if lr_rule is not None:
        set_dotted(data, "schedule.lr_rule", lr_rule[0])
        set_dotted(data, "schedule.reference_batch", lr_rule[1])
    for key, value in params.items():
        set_dotted(data, key, value)
    given = set(fixed) | set(params)
    for key, other in (("train.global_batch", "train.grad_accum"), ("train.grad_accum", "train.global_batch")):
        if key in given and other not in given:
            drop_dotted(data, other)
    return data


def weak(data: dict, phases: list[Phase], workers: int, swept: dict) -> dict:
    """Weak scaling: each phase keeps its per-worker batch and accumulation (the reference
    `phases`', or the swept `train.*` value where the phase has none of its own); the global
    batch becomes per_worker_batch x workers x grad_accum."""
    data = copy.deepcopy(data)
    set_dotted(data, WORKERS_KEY, workers)
    set_dotted(data, "train.scaling_mode", "weak")
    for key, phase, own in _phase_keys(data, phases):
        _batch(data, key, per_worker_batch=_pick("per_worker_batch", phase, own, swept),
               grad_accum=_pick("grad_accum", phase, own, swept))
    return data


def strong(data: dict, phases: list[Phase], workers: int, swept: dict) -> dict:
    """Strong scaling: each phase keeps its global batch. Accumulation makes up the rest:
    grad_accum = global / (per_worker_batch x workers). Where that does not divide, the
    per-worker batch shrinks to the largest value that does (a smaller micro-batch always fits
    in memory; more accumulation costs time, not correctness)."""
    data = copy.deepcopy(data)
    set_dotted(data, WORKERS_KEY, workers)
    set_dotted(data, "train.scaling_mode", "strong")
    for key, phase, own in _phase_keys(data, phases):
        global_batch = _pick("global_batch", phase, own, swept)
        pwb = strong_micro_batch(global_batch, _pick("per_worker_batch", phase, own, swept), workers)
        if pwb is None:
            where = "" if key == "train" else f"{key}: "
            raise StudyError(f"{where}global batch {global_batch} cannot be split evenly over "
                             f"{workers} workers; valid worker counts divide {global_batch}")
        _batch(data, key, per_worker_batch=pwb, global_batch=global_batch)
    return data


def strong_micro_batch(global_batch: int, per_worker_batch: int, workers: int) -> int | None:
    """The largest micro-batch <= `per_worker_batch` with global_batch % (micro x workers) == 0."""
    for pwb in range(min(per_worker_batch, global_batch // workers), 0, -1):
        if global_batch % (pwb * workers) == 0:
            return pwb
    return None


def _phase_keys(data: dict, phases: list[Phase]) -> list[tuple[str, Phase, dict]]:
    """Where each phase's batch lives (`train` or `train.phases.N`), its reference values, and
    the batch keys the phase sets itself (a swept `train.*` value does not reach those)."""
    listed = data.get("train", {}).get("phases")
    if not listed:
        return [("train", phases[0], {})]
    return [(f"train.phases.{p.index}", p, listed[p.index]) for p in phases]


def _pick(name: str, phase: Phase, own: dict, swept: dict) -> int:
    together = ("global_batch", "grad_accum")  # a phase giving either one has fixed both
    if name in own or (name in together and any(k in own for k in together)):
        return getattr(phase, name)
    return swept.get(f"train.{name}", getattr(phase, name))


def _batch(data: dict, key: str, **values: int) -> None:
    for name in ("per_worker_batch", "global_batch", "grad_accum"):
        drop_dotted(data, f"{key}.{name}")
    if key != "train":  # phases inherit train-level batch keys: drop those too, the phase now says all
        for name in ("global_batch", "grad_accum"):
            drop_dotted(data, f"train.{name}")
    for name, value in values.items():
        set_dotted(data, f"{key}.{name}", value)
