"""Learning-rate schedules as pure ``step -> multiplier`` functions.

``step`` counts the optimizer steps already taken (``LambdaLR``'s ``last_epoch``), so under
warmup step 0 has multiplier 0, as in Hugging Face's schedules and the LANS formula. Wrap a
schedule at the call site::

    sched = torch.optim.lr_scheduler.LambdaLR(opt, build_schedule("poly", 1000, warmup=0.1))

Warmup (and LANS's constant stage) is given either as a float in [0, 1) — a fraction of
``total_steps``, kept fractional so that the papers' formulas in x = step/total hold exactly — or
as an int >= 1 — a number of steps (``0`` means none). Past ``total_steps`` a schedule stays at
its final value.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from scaling_study.optim.base import check_kwargs
from scaling_study.optim.names import SCHEDULE_NAMES, check_registry

Schedule = Callable[[int], float]


def resolve_steps(name: str, value: Any, total_steps: int) -> float:
    """Turn a ratio (float in [0, 1)) or a step count (int in [0, total]) into steps."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        ok = False
    elif isinstance(value, int):
        ok = 0 <= value <= total_steps
    else:
        ok = 0.0 <= value < 1.0
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: expected a float ratio in [0, 1) of "
                         f"total_steps or an int number of steps in [0, {total_steps}]")
    return float(value) if isinstance(value, int) else value * total_steps


def _warmup(step: int, warmup: float) -> float | None:
    """The warmup multiplier step/warmup while warming up, else None."""
    return step / warmup if step < warmup else None


def poly(total_steps: int, warmup: float, *, power: float = 1.0, end: float = 0.0) -> Schedule:
    """Linear warmup, then polynomial decay from 1 to ``end``: (1−end)·(1−p)^power + end.

    p = (step − warmup)/(total − warmup). ``power=1`` is BERT's linear decay; NVIDIA's LAMB
    recipe uses ``power=0.5``. References: Devlin et al. 2019 (BERT); You et al. 2019 (LAMB).
    """
    _check_range("power", power, 0.0, math.inf)
    _check_range("end", end, 0.0, 1.0)

    def fn(step: int) -> float:
        w = _warmup(step, warmup)
        if w is not None:
            return w
        p = min(1.0, (step - warmup) / max(total_steps - warmup, 1e-12))
        return (1.0 - end) * (1.0 - p) ** power + end
    return fn


def lans(total_steps: int, warmup: float, *, constant: float | int = 0.0,
         degree: float = 1.0) -> Schedule:
    """LANS's warmup–constant–decay: x/w for x < w; 1 for x < w + c; ((1−x)/(1−w−c))^degree.

    x = step/total, w the warmup and c the constant stage, both as ratios (or steps).
    References: Zheng et al. 2020 (LANS), Eq. (5); their script uses w=0.05, c=0.25, degree 1.
    """
    const = resolve_steps("constant", constant, total_steps)
    _check_range("degree", degree, 0.0, math.inf)
    if warmup + const >= total_steps:
        raise ValueError(f"warmup + constant = {(warmup + const) / total_steps:g} of "
                         f"total_steps is invalid: expected < 1 (no steps left to decay)")

    def fn(step: int) -> float:
        w = _warmup(step, warmup)
        if w is not None:
            return w
        if step < warmup + const:
            return 1.0
        return (max(total_steps - step, 0) / (total_steps - warmup - const)) ** degree
    return fn


def cosine(total_steps: int, warmup: float, *, floor: float = 0.0) -> Schedule:
    """Linear warmup, then half a cosine from 1 down to ``floor``.

    References: Loshchilov & Hutter 2017, "SGDR" (without restarts).
    """
    _check_range("floor", floor, 0.0, 1.0)

    def fn(step: int) -> float:
        w = _warmup(step, warmup)
        if w is not None:
            return w
        p = min(1.0, (step - warmup) / max(total_steps - warmup, 1e-12))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
    return fn


def constant(total_steps: int, warmup: float) -> Schedule:
    """Linear warmup, then 1."""
    def fn(step: int) -> float:
        w = _warmup(step, warmup)
        return 1.0 if w is None else w
    return fn


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "poly": poly,
    "lans": lans,
    "cosine": cosine,
    "constant": constant,
}
check_registry("schedule", SCHEDULES, SCHEDULE_NAMES)


def build_schedule(name: str, total_steps: int, *, warmup: float | int = 0.0,
                   **kwargs: Any) -> Schedule:
    """Return the ``step -> multiplier`` function ``name`` (a key of ``SCHEDULES``, any case).

    Raises:
        ValueError: unknown name or keyword (listing the valid ones), ``total_steps`` < 1, or a
            warmup that is neither a ratio in [0, 1) nor a step count in [0, total_steps].
    """
    factory = SCHEDULES.get(name.lower()) if isinstance(name, str) else None
    if factory is None:
        raise ValueError(f"unknown schedule {name!r}: expected one of {', '.join(SCHEDULES)}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps={total_steps!r} is invalid: expected an int >= 1")
    check_kwargs(f"schedule {name!r}", factory, kwargs, skip=("total_steps", "warmup"))
    return factory(total_steps, resolve_steps("warmup", warmup, total_steps), **kwargs)


def phased_schedule(phases: Sequence[tuple[int, Schedule]]) -> Schedule:
    """Chain schedules: phase k runs its own schedule from its own step 0 for ``steps_k`` steps.

    The returned function takes the global step; each phase restarts its schedule, so a warmup
    in phase 2 warms up again (LAMB's phase-2 re-warmup in BERT pretraining). Past the last phase
    the last schedule continues (and so stays at its final value).

    Args:
        phases: ``[(steps, schedule), ...]``, e.g.
            ``[(7038, build_schedule("poly", 7038, warmup=0.2843)),
               (1563, build_schedule("poly", 1563, warmup=0.128))]``.

    References: You et al. 2019 (LAMB), Section 4 (mixed-batch training, re-warmup).
    """
    if not phases:
        raise ValueError("phases=[] is invalid: expected at least one (steps, schedule) pair")
    starts = []
    start = 0
    for k, (steps, schedule) in enumerate(phases):
        if (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1
                or not callable(schedule)):
            raise ValueError(f"phases[{k}]=({steps!r}, {schedule!r}) is invalid: expected "
                             "(steps: int >= 1, schedule: callable)")
        starts.append(start)
        start += steps

    def fn(step: int) -> float:
        k = max(i for i, s in enumerate(starts) if s <= step) if step >= 0 else 0
        return phases[k][1](step - starts[k])
    return fn


def _check_range(name: str, value: Any, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} is invalid: expected a number in [{lo:g}, {hi:g}]")
