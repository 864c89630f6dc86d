"""Checks of a search space against its base job, run by `load_space` before any trial starts.

Each check raises a `ConfigError` naming the space file, the dotted key in it and what is valid.
The last one builds the job of every grid point (times the study's workers and seeds, times the
ends of each range) so that a combination that cannot run fails now, not an hour into a sweep.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import types
import typing
from typing import Any, Union, get_args, get_origin

from scaling_study.config import Job
from scaling_study.errors import ConfigError
from scaling_study.tune.study import SEED_KEY, WORKERS_KEY

# Job keys a sweep cannot vary, and why.
FIXED_KEYS = {"name": "each trial gets its own name from the sweep",
              "task": "a sweep compares runs on one task's metric"}
# Each check builds a job (~4 ms): more combinations than this would make loading slow, and is
# more trials than a sweep on this tool means to run.
MAX_CHECKED_POINTS = 2_000


def check(space) -> None:
    """Every check of a loaded `SearchSpace`; the first failure raises."""
    source = str(space.path)
    for key in space.dimensions:
        check_job_key(key, f"parameters.{key}", source)
    for key in space.spec.set:
        check_job_key(key, f"set.{key}", source)
    _check_overlaps(space, source)
    _check_study(space, source)
    _check_search(space, source)
    _check_group_by(space, source)
    _check_points(space, source)


def check_job_key(key: str, where: str, source: str) -> None:
    """Raise unless `key` (dotted, list items by index) names a value in the Job schema."""
    tp: Any = Job
    parts = key.split(".")
    for i, part in enumerate(parts):
        tp = _strip_none(tp)
        here = ".".join(parts[:i]) or "the job"
        if tp is Any or get_origin(tp) is dict:
            return  # a free-form mapping (optimizer.args): any key below it is the optimizer's business
        if get_origin(tp) is list:
            if not part.isdigit():
                raise ConfigError(where, f"{here} is a list; address an item by index ({here}.0.<key>)", source)
            tp = get_args(tp)[0]
            continue
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(where, f"{here} is a single value; it has no key {part!r}", source)
        hints = typing.get_type_hints(tp)
        names = [f.name for f in dataclasses.fields(tp) if f.init]
        if part not in names:
            raise ConfigError(where, f"unknown key; valid keys under {here}: {', '.join(names)}", source)
        tp = hints[part]
    tp = _strip_none(tp)
    if dataclasses.is_dataclass(tp):
        names = ", ".join(f.name for f in dataclasses.fields(tp) if f.init)
        raise ConfigError(where, f"is a section, not a value; sweep one of its keys: {names}", source)


def _strip_none(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _check_overlaps(space, source: str) -> None:
    lr_keys = ("schedule.lr_rule", "schedule.reference_batch") if space.spec.lr_scaling else ()
    for key in space.dimensions:
        if key in FIXED_KEYS:
            raise ConfigError(f"parameters.{key}", f"cannot be swept: {FIXED_KEYS[key]}", source)
        if key in space.spec.set:
            raise ConfigError(f"parameters.{key}", f"is also fixed in set.{key}; give it in one place", source)
        if key in lr_keys:
            raise ConfigError(f"parameters.{key}", "is set by lr_scaling in every trial; drop one of them", source)
    for key in space.spec.set:
        if key in FIXED_KEYS or key in lr_keys:
            why = FIXED_KEYS.get(key, "lr_scaling sets it in every trial")
            raise ConfigError(f"set.{key}", f"cannot be set here: {why}", source)


def _check_study(space, source: str) -> None:
    study = space.spec.study
    if study is None:
        return
    owned = (WORKERS_KEY, SEED_KEY, "train.scaling_mode")
    # Each mode fixes one way of saying the batch; sweeping the other way contradicts it.
    contradicts = {"weak": ("train.global_batch", "keeps the per-worker batch and accumulation; "
                                                  "sweep train.per_worker_batch or train.grad_accum"),
                   "strong": ("train.grad_accum", "keeps the global batch and derives accumulation; "
                                                  "sweep train.global_batch")}
    for section, keys in (("parameters", space.dimensions), ("set", space.spec.set)):
        for key in keys:
            if key in owned:
                raise ConfigError(f"{section}.{key}", "is set by the scaling study (study.workers, study.seeds, "
                                                       "study.mode); drop it here or drop the study", source)
    bad, why = contradicts[study.mode]
    if bad in space.dimensions:
        raise ConfigError(f"parameters.{bad}", f"study.mode {study.mode} {why}", source)


def _check_search(space, source: str) -> None:
    algorithm = space.spec.search.algorithm
    if algorithm == "grid":
        for key, dim in space.dimensions.items():
            if dim.enumerated(True) is None:
                raise ConfigError(f"parameters.{key}.distribution",
                                  f"search.algorithm grid enumerates every dimension, and {dim.distribution} "
                                  f"cannot be enumerated; give values (grid or choice), or use algorithm random",
                                  source)
    if algorithm != "optuna":
        return
    if importlib.util.find_spec("optuna") is None:
        raise ConfigError("search.algorithm", "optuna is not installed here (pip install optuna); "
                                              "valid without it: random, grid", source)
    for key, dim in space.dimensions.items():
        if dim.distribution == "grid":
            raise ConfigError(f"parameters.{key}.distribution", "Optuna samples every dimension and cannot run "
                                                                "a grid; use choice", source)
    if space.spec.study is not None:
        raise ConfigError("study", "a scaling study is a grid over workers and seeds, which Optuna cannot run; "
                                   "use search.algorithm random or grid", source)


def _check_group_by(space, source: str) -> None:
    """`scheduler.group_by` names swept keys with few values (Scheduler checks name and duplicates)."""
    swept = [*space.dimensions, *space.study_axes()]
    for key in space.scheduler.group_by:
        if key not in swept:
            raise ConfigError("scheduler.group_by", f"{key!r} is not swept by this space; valid: "
                                                    f"{', '.join(swept)}", source)
        dim = space.dimensions.get(key)
        if dim is not None and dim.distribution in ("uniform", "loguniform"):
            raise ConfigError("scheduler.group_by", f"{key!r} is sampled from {dim.distribution}: each trial "
                                                    f"would be a group of its own and ASHA would stop none; group "
                                                    f"by keys with values (grid, choice) or randint", source)


def check_points(space) -> list[dict]:
    """The combinations `load_space` builds a job for: each listed value, each range's ends
    (each value of a small randint over a batch key), times the study's workers and seeds."""
    axes = {key: dim.check_values(key) for key, dim in space.dimensions.items()}
    axes.update(space.study_axes())
    count = math.prod(len(v) for v in axes.values())
    if count > MAX_CHECKED_POINTS:
        sizes = ", ".join(f"{k}: {len(v)}" for k, v in axes.items())
        raise ConfigError("parameters", f"{count} combinations to check ({sizes}); more than "
                                        f"{MAX_CHECKED_POINTS}: narrow the grid or the randint ranges",
                          str(space.path))
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def _check_points(space, source: str) -> None:
    lengths = [_trial_length(space.job_for(point, space.name), space.scheduler.time_attr)
               for point in check_points(space)]
    s = space.scheduler
    if s.name != "asha" or None in lengths:
        return
    longest = max(lengths)
    if s.grace_period >= longest:
        raise ConfigError("scheduler.grace_period",
                          f"{s.grace_period:g} {s.time_attr} is at or past the end of every trial (the longest "
                          f"runs {longest} {s.time_attr}), so ASHA would never stop one; valid: < {longest}",
                          source)


def _trial_length(job: Job, time_attr: str) -> int | None:
    """A trial's full length on ASHA's clock, where the job alone fixes it (not for seconds)."""
    phases = job.phases()
    if time_attr == "train_time_s" or any(p.steps is None for p in phases):
        return None
    return sum(p.steps * (p.global_batch if time_attr == "samples" else 1) for p in phases)
