"""Steering a running sweep from outside it: stop one trial, or stop the whole sweep, and say
what the sweep is doing while it runs.

The study service (or anyone who can write to the sweep's folder, local or on an object store)
drops a request file into ``SWEEP/steer/``; the sweep's driver acts on it:

- ``StopRequests`` is the sweep's Tune ``Stopper``. A trial with a pending request stops at its
  next reported evaluation, as ASHA would stop it, so its records and checkpoints stay; a marker
  ``trials/<trial_id>/stopped_by_user.json`` says who stopped it. A request to stop the sweep
  interrupts the Tune run the way Ctrl+C does (Tune's own SIGUSR1 handler: the experiment state
  is saved and unfinished trials stay unfinished), so ``scaling-study sweep --resume`` continues
  it. Requests are consumed once acted on, so a resumed sweep does not stop again.
- ``SweepStatus`` is a Tune ``Callback`` that keeps ``SWEEP/steer/status.json`` current: the
  sweep's state (running, finished, interrupted) with a heartbeat, its scheduler settings (the
  metric, ASHA's ``max_t``), and each trial's state and why it ended.

The sweep installs both with ``sweep_hooks`` (``tune.RunConfig(stop=..., callbacks=[...])``).
Everything goes through ``storage.Loc``, so a sweep on S3 is steered the same way.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import asdict

from ray.tune import Callback, Stopper

from scaling_study.layout import (
    STATUS_FILE, STEER_DIR, STOP_SWEEP, STOPPED_BY_USER, TRIALS_DIR, stop_trial_file, trial_to_stop,
)
from scaling_study.storage import Loc

HEARTBEAT_S = 5.0
"""How often a running sweep rewrites its status file; readers call a sweep whose heartbeat is
much older than this interrupted (its driver is gone)."""
CHECK_EVERY_S = 1.0
"""How often the stopper lists the request folder (Tune asks it about ten times a second)."""

# Sweep states in status.json.
RUNNING, FINISHED, INTERRUPTED = "running", "finished", "interrupted"
_ENDED = ("finished", "stopped", "error")  # trial states in status.json that are final


# --- requests (written by the service) -------------------------------------------------------

def request_stop(sweep_dir, trial_id: str | None = None, *, by: str = "user") -> Loc:
    """Ask the sweep in `sweep_dir` to stop `trial_id` (or, without one, the whole sweep).
    Returns the request file. The sweep acts at the trial's next evaluation (a trial) or within
    about a second (the sweep)."""
    if trial_id is not None and (not trial_id or "/" in trial_id or trial_id.startswith(".")):
        raise ValueError(f"trial id {trial_id!r}: a plain folder name is expected")
    name = STOP_SWEEP if trial_id is None else stop_trial_file(trial_id)
    body = {"trial_id": trial_id, "by": by, "requested_at": time.time()}
    return (Loc(sweep_dir) / STEER_DIR / name).write_text(json.dumps(body))


def pending_requests(sweep_dir) -> tuple[bool, set[str]]:
    """(whether a stop of the whole sweep is pending, trial ids with a pending stop)."""
    import pyarrow.fs as pafs

    folder = Loc(sweep_dir) / STEER_DIR
    infos = folder.fs.get_file_info(pafs.FileSelector(folder.fs_path, allow_not_found=True))
    names = [i.base_name for i in infos if i.type == pafs.FileType.File]
    trials = {trial_to_stop(n) for n in names} - {None}
    return STOP_SWEEP in names, trials


def _delete(loc: Loc) -> None:
    try:
        loc.fs.delete_file(loc.fs_path)
    except (FileNotFoundError, OSError):
        pass  # consumed already (a second driver, or a retry): nothing to undo


# --- the stopper (runs in the sweep's driver) ------------------------------------------------

class StopRequests(Stopper):
    """Tune `Stopper` acting on the request files of `request_stop` (see the module docstring)."""

    def __init__(self, sweep_dir, check_every_s: float = CHECK_EVERY_S):
        self._dir = str(Loc(sweep_dir))
        self._check_every_s = check_every_s
        self._checked: float | None = None  # time.monotonic() of the last look; None: never looked
        self._sweep = False
        self._trials: set[str] = set()

    def __getstate__(self) -> dict:
        # Tune pickles the stopper with the experiment; a restored sweep reads the folder afresh.
        return {"_dir": self._dir, "_check_every_s": self._check_every_s}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["_dir"], state["_check_every_s"])

    def _refresh(self) -> None:
        now = time.monotonic()
        if self._checked is None or now - self._checked >= self._check_every_s:
            self._checked = now
            try:
                self._sweep, self._trials = pending_requests(self._dir)
            except OSError:  # an object store that blinked: ask again at the next check
                pass

    def __call__(self, trial_id: str, result: dict) -> bool:
        self._refresh()
        if trial_id not in self._trials:
            return False
        sweep = Loc(self._dir)
        request = sweep / STEER_DIR / stop_trial_file(trial_id)
        marker = {"trial_id": trial_id, "stopped_at": time.time(), **_read_json(request)}
        (sweep / TRIALS_DIR / trial_id / STOPPED_BY_USER).write_text(json.dumps(marker))
        _delete(request)
        self._trials.discard(trial_id)
        return True

    def stop_all(self) -> bool:
        self._refresh()
        if not self._sweep:
            return False
        sweep = Loc(self._dir)
        request = sweep / STEER_DIR / STOP_SWEEP
        _write_status_field(sweep, "stopped_by_user", {"stopped_at": time.time(), **_read_json(request)})
        _delete(request)
        self._sweep = False
        if _interrupt():
            return False  # Tune ends the run itself, as after Ctrl+C, leaving trials resumable
        # No interrupt handler here (Tune ran outside the main thread): end the run the only
        # other public way. Its trials end as stopped and `--resume` has nothing left to run.
        return True


def _interrupt() -> bool:
    """Raise SIGUSR1 in this process if Tune's handler for it is installed (it is whenever
    `Tuner.fit` runs in the main thread): Tune then saves its state and ends the run."""
    if not hasattr(signal, "SIGUSR1") or threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(signal.SIGUSR1)
    if not callable(handler):
        return False
    os.kill(os.getpid(), signal.SIGUSR1)
    return True


# --- the status file (written by the sweep's driver) -----------------------------------------

class SweepStatus(Callback):
    """Tune `Callback` keeping `SWEEP/steer/status.json` current (see the module docstring).

    The file holds: state, started_at, heartbeat_at, pid, info (the scheduler settings given at
    construction), trials ({trial_id: {state, finished, error}}) and, once a user stopped the
    sweep, stopped_by_user.
    """

    def __init__(self, sweep_dir, info: dict | None = None, heartbeat_s: float = HEARTBEAT_S):
        self._dir = str(Loc(sweep_dir))
        self._info = dict(info or {})
        self._heartbeat_s = heartbeat_s
        self._written = 0.0
        self._trials: dict[str, dict] = {}

    def setup(self, **info) -> None:
        self._trials = dict(_read_status(Loc(self._dir)).get("trials", {}))  # a resumed sweep keeps them
        self._write(RUNNING, started_at=time.time())

    def on_step_begin(self, iteration, trials, **info) -> None:
        if time.monotonic() - self._written >= self._heartbeat_s:
            self._write(RUNNING)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._trial(trial, "running")

    def on_trial_restore(self, iteration, trials, trial, **info) -> None:
        self._trial(trial, "running")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        finished = bool((trial.last_result or {}).get("finished"))
        self._trial(trial, "finished" if finished else "stopped", finished=finished)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._trial(trial, "error", error=_error_line(trial))

    def on_experiment_end(self, trials, **info) -> None:
        # Trials that Tune stops while ending an interrupted run get no completion callback (and
        # pending ones never started): a run is finished only if every trial ended on its own.
        ended = all(self._trials.get(t.trial_id, {}).get("state") in _ENDED for t in trials)
        self._write(FINISHED if ended else INTERRUPTED)

    def _trial(self, trial, state: str, **extra) -> None:
        self._trials[trial.trial_id] = {"state": state, "at": time.time(), **extra}
        self._write(RUNNING)

    def _write(self, state: str, **fields) -> None:
        sweep = Loc(self._dir)
        status = _read_status(sweep)
        if state == RUNNING and "started_at" in fields:
            status.pop("stopped_by_user", None)  # a resumed sweep runs again
        status.update(state=state, heartbeat_at=time.time(), pid=os.getpid(), info=self._info,
                      trials=self._trials, **fields)
        try:
            (sweep / STEER_DIR / STATUS_FILE).write_text(json.dumps(status, default=str))
        except OSError:  # a status file is a courtesy: never fail the sweep over it
            return
        self._written = time.monotonic()


def _error_line(trial) -> str:
    """The last non-empty line of the error Tune recorded for `trial` (its message)."""
    path = getattr(trial, "error_file", None)
    try:
        text = Loc(path).read_text() if path else ""
    except (OSError, ValueError):
        text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "the trial failed (see the sweep's log)"


def _read_json(loc: Loc) -> dict:
    try:
        data = json.loads(loc.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_status(sweep: Loc) -> dict:
    return _read_json(sweep / STEER_DIR / STATUS_FILE)


def _write_status_field(sweep: Loc, key: str, value) -> None:
    status = _read_status(sweep)
    status[key] = value
    (sweep / STEER_DIR / STATUS_FILE).write_text(json.dumps(status, default=str))


def sweep_hooks(space, sweep_dir) -> dict:
    """The keyword arguments of `tune.RunConfig` that make a sweep steerable:
    `tune.RunConfig(..., **sweep_hooks(space, sweep_dir))`."""
    info = {"name": space.name, "space": str(space.path), "scheduler": asdict(space.scheduler),
            "trials_planned": space.trial_count()}
    return {"stop": StopRequests(sweep_dir), "callbacks": [SweepStatus(sweep_dir, info)]}
