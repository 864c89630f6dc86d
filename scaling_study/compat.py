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


# -- Ray Train's placement-group cleaner: told of a worker group's placement group at once -----
# The leak this closes (Ray 2.60): a Train controller creates its worker group's placement group
# in `WorkerGroup._start_impl`, waits for it (up to 60 s, then retries for ever), starts the
# workers and their process group, and only then, in `PlacementGroupCleanerCallback.
# after_worker_group_start`, tells its detached `PlacementGroupCleaner` about the group. A
# placement group made by an actor lives until that actor AND its job have ended, so when the
# controller dies in that window (Tune stopping a trial while its workers start or wait for room:
# the trial's actor dies and takes its controller with it) nobody ever removes the group. It
# holds its CPUs/GPUs until the sweep's driver exits, and the next trial that needs them waits
# for ever (tests/test_placement_leak.py reproduces it). Why private: no public hook sees the
# placement group between its creation and the worker group's start; the fix hands it to Ray's
# own cleaner (which removes it once the controller is dead) as soon as it exists.

def register_worker_group_placement_groups() -> bool:
    """Make every Ray Train worker group in this process register its placement group with the
    run's `PlacementGroupCleaner` right after creating it (idempotent). False where the installed
    Ray has no such cleaner (nothing to do: a later Ray may register early itself)."""
    with _private("register_worker_group_placement_groups"):
        from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
        from ray.train.v2._internal.execution.worker_group.worker_group import WorkerGroup

        create = WorkerGroup._create_placement_group
        if getattr(create, "_registers_early", False):
            return True

        def create_and_register(self, *args, **kwargs):
            cleaners = [c for c in self._callbacks if isinstance(c, PlacementGroupCleanerCallback)]
            for callback in cleaners:  # alive before the group exists: then only microseconds
                _cleaner_call(callback, "start_monitoring")  # remain between creating and telling
            handle = create(self, *args, **kwargs)
            for callback in cleaners:
                _cleaner_call(callback, "register_placement_group", handle.placement_group)
            return handle

        create_and_register._registers_early = True
        WorkerGroup._create_placement_group = create_and_register
        return True


def install_placement_group_fix() -> None:
    """`register_worker_group_placement_groups`, warning (not failing) where the installed Ray
    moved what it patches: runs then behave as on plain Ray."""
    try:
        register_worker_group_placement_groups()
    except CompatError as exc:
        warnings.warn(str(exc), RuntimeWarning, stacklevel=2)


def _cleaner_call(callback: Any, method: str, *args: Any) -> None:
    """Call `method` of the callback's cleaner actor and wait for it (`start_monitoring` is
    idempotent; `register_placement_group` is the call Ray makes after the workers start, and
    registering again later only repeats it)."""
    import ray

    cleaner = getattr(callback, "_cleaner", None)
    if cleaner is None:  # Ray could not start the cleaner: it warned about it already
        return
    try:
        ray.get(getattr(cleaner, method).remote(*args), timeout=CLEANER_CALL_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - as Ray's own registration: warn, never fail the run
        logging.getLogger(__name__).warning("Ray Train's placement-group cleaner did not answer %s within %s s: %s",
                                            method, CLEANER_CALL_TIMEOUT_S, exc)


CLEANER_CALL_TIMEOUT_S = 60.0
"""How long a controller waits for its placement-group cleaner actor to start or to answer."""


# -- Ray Train's worker-group start timeout ------------------------------------------------------
# Why private: Ray 2.60 raises `WorkerGroupStartupTimeoutError` (ray/train/v2/_internal/exceptions.py)
# inside the public `ray.train.ControllerError` when no room was found for a worker group; the
# class itself is not exported, and no public attribute says why a controller failed.

def is_worker_group_start_timeout(error: BaseException | None) -> bool:
    """Whether `error` (a `ControllerError.controller_failure`) is Ray Train's timeout waiting for
    room for a worker group."""
    with _private("is_worker_group_start_timeout"):
        from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

        return isinstance(error, WorkerGroupStartupTimeoutError)


# -- Ray's token authentication, as Ray's own CLI uses it ------------------------------------
# Why private: `ray start`, `ray status` and the other CLI commands switch token authentication on
# when RAY_AUTH_MODE is unset and a token is available (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
# ~/.ray/auth_token), through `maybe_enable_token_auth_if_token_available` in
# ray/_private/authentication/authentication_token_setup.py; `ray.init(address=...)` with an
# explicit address does not, and a cluster that wants the token then refuses the connection. No
# public function does what the CLI does.

def use_cluster_token() -> bool:
    """As Ray's CLI: with RAY_AUTH_MODE unset and a token available, switch this process (and
    what it starts) to token authentication. True when token authentication is on."""
    with _private("use_cluster_token"):
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        return bool(maybe_enable_token_auth_if_token_available(warn_if_disabled=False))


# -- A bound on an elastic run's wait for its fewest workers ---------------------------------
# Why private: Ray Train 2.60's elastic scaling policy (`ScalingConfig(num_workers=(MIN, MAX))`)
# keeps a run that finds room for fewer than MIN workers in its waiting states (Initializing,
# Restarting, Rescheduling) for ever: it never attempts a placement, so the attempts that bound a
# fixed run's wait (FailureConfig.controller_failure_limit) never fail. The only hook that sees
# those states is `ControllerCallback.after_controller_state_update` (called at every iteration of
# the controller's loop, ray/train/v2/_internal/execution/controller/controller.py); a callback in
# `RunConfig.callbacks` that is not a `UserCallback` is installed on the controller as it is.
# Raising Ray's own `WorkerGroupStartupTimeoutError` there fails the run as a fixed run's
# placement timeout does: each raise is a controller failure that the failure policy counts.

def elastic_wait_limit(timeout_s: float, min_workers: int):
    """A controller callback for an elastic run: once the run has waited `timeout_s` for room for
    `min_workers`, every further step of the wait raises Ray Train's worker-group startup
    timeout (see above); a group that starts resets the clock."""
    import time

    with _private("elastic_wait_limit"):
        from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError
        from ray.train.v2._internal.execution.callback import ControllerCallback
        from ray.train.v2._internal.execution.controller.state import (
            InitializingState,
            ReschedulingState,
            RestartingState,
        )

    waiting = (InitializingState, RestartingState, ReschedulingState)

    class ElasticWaitLimit(ControllerCallback):
        def __init__(self):
            self.since = None

        def after_controller_state_update(self, previous_state, current_state):
            if not isinstance(current_state, waiting):
                self.since = None
                return
            now = time.monotonic()
            self.since = now if self.since is None else self.since
            if now - self.since > timeout_s:
                raise WorkerGroupStartupTimeoutError(min_workers)

    return ElasticWaitLimit()
