"""The private names of Ray that this project needs, each behind one small shim.

Nothing else in `scaling_study` imports a private Ray module or reads a private attribute of a Ray
object. Each shim says why no public API does its job and which Ray version it was read against
(`CHECKED_RAY`). When an upgrade moves a name, the shim raises `CompatError`, which names the shim,
the installed Ray and the checked one; `tests/test_compat.py` calls every shim, so that happens in
the tests first.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from scaling_study.errors import UserError

CHECKED_RAY = "2.60.0"
"""The Ray release whose source the shims below were checked against."""


class CompatError(UserError):
    """A private name of Ray that a shim relies on is gone or changed in the installed Ray."""


def ray_version() -> str:
    import ray

    return ray.__version__


@contextmanager
def _private(shim: str) -> Iterator[None]:
    """Turn a moved or reshaped private name into a CompatError that says what to do."""
    try:
        yield
    except (ImportError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CompatError(f"scaling_study.compat.{shim} does not work with the installed Ray {ray_version()} "
                          f"(checked against Ray {CHECKED_RAY}): {type(exc).__name__}: {exc}. Install "
                          f"ray=={CHECKED_RAY}, or update the shim for this Ray") from exc


# -- Ray Train's per-report log line ---------------------------------------------------------

def ray_train_report_logger() -> logging.Logger:
    """The logger with which Ray Train logs each `ray.train.report` (its full metrics) at INFO.

    Why private: Ray 2.60 names it by its source file (`logging.getLogger(__file__)` in
    `ray/train/v2/_internal/execution/context.py`), outside the `ray.train` logger tree, so neither
    Ray Train's logging configuration nor the `ray.train` logger reaches it.
    """
    with _private("ray_train_report_logger"):
        from ray.train.v2._internal.execution import context

        logger = context.logger
        if not isinstance(logger, logging.Logger):
            raise TypeError(f"ray.train.v2._internal.execution.context.logger is {logger!r}, not a Logger")
        return logger


def quiet_ray_train_report_logger() -> None:
    """Keep Ray Train's per-report INFO line out of a worker's log (our records print their own).

    Cosmetic: where the installed Ray moved that logger, warn and carry on rather than fail a run.
    """
    try:
        ray_train_report_logger().setLevel(logging.WARNING)
    except CompatError as exc:
        warnings.warn(str(exc), RuntimeWarning, stacklevel=2)


# -- ASHA's bookkeeping -----------------------------------------------------------------------
# Why private: `ASHAScheduler` (ray/tune/schedulers/async_hyperband.py in Ray 2.60) keeps its rungs,
# each trial's bracket, its count of stopped trials and its metric settings in private attributes,
# and `Tuner.restore` does not restore them. Its public `save`/`restore` pickle the whole
# `__dict__` to a local path: opaque, bound to the same private layout (after a rename it would
# restore into attributes nobody reads, silently), and unable to write the readable JSON state
# file that tune/asha.py keeps next to the sweep's results, which may be an object store.

def asha_rungs(scheduler: Any) -> list[list[tuple[float, dict[str, float]]]]:
    """Per bracket, its rungs as `(milestone, recorded)` pairs, highest milestone first.

    `recorded` maps a trial id to the (sign-adjusted) metric it reported at that milestone, and is
    the scheduler's own dict: changing it changes the scheduler's later cut-offs.
    """
    with _private("asha_rungs"):
        return [[(float(milestone), recorded) for milestone, recorded in bracket._rungs]
                for bracket in scheduler._brackets]


def asha_trial_brackets(scheduler: Any) -> dict[str, int]:
    """The bracket index of every trial the scheduler is tracking (added, not yet completed)."""
    with _private("asha_trial_brackets"):
        index = {id(bracket): i for i, bracket in enumerate(scheduler._brackets)}
        return {trial_id: index[id(bracket)] for trial_id, bracket in scheduler._trial_info.items()}


def asha_assign_bracket(scheduler: Any, trial_id: str, index: int) -> None:
    """Put a tracked trial into bracket `index` (a restored trial keeps the bracket it had)."""
    with _private("asha_assign_bracket"):
        scheduler._trial_info[trial_id] = scheduler._brackets[index]


def asha_num_stopped(scheduler: Any, value: int | None = None) -> int:
    """How many trials the scheduler has stopped; with `value`, set that count first."""
    with _private("asha_num_stopped"):
        if value is not None:
            scheduler._num_stopped = int(value)
        return int(scheduler._num_stopped)


def asha_settings(scheduler: Any) -> dict[str, str | None]:
    """The metric, mode and time attribute the scheduler decides on (metric and mode may come
    from `TuneConfig` after construction)."""
    with _private("asha_settings"):
        return {"metric": scheduler._metric, "mode": scheduler._mode, "time_attr": scheduler._time_attr}
