"""What a run's folder and a sweep's folder hold: the name of every file and folder, defined once.

A run writes into ``RUN_DIR`` (``output.dir/<name>/``); a sweep into ``SWEEP_DIR`` with one run
folder per trial under ``SWEEP_DIR/trials/<trial_id>/``. Training, sweeps, reports, export, the
study service and the benchmarks all name these files from here. This module imports nothing,
so that anything (the torch-free service included) may import it.
"""
from __future__ import annotations

# --- a run's folder (also each trial's folder in a sweep) -------------------------------------


def run_dir_of(output_dir, name: str):
    """A run's folder, ``output.dir/<name>``. `output_dir` is the folder object the caller works
    with (a `scaling_study.storage.Loc`, a `pathlib.Path`): anything with ``/``; the result is
    of its type. This module imports nothing, so the caller builds it."""
    return output_dir / name


RECORDS = "records.csv"
"""One row per evaluation (the columns of `scaling_study.contract`), appended as the run trains:
the run's durable store."""
RECORDS_PARQUET = "records.parquet"
"""The same records, written once by the driver when the run has ended."""
JOB_FILE = "job.yaml"
"""The job the run ran, a job YAML that `scaling-study run` runs again as it is."""
TRAIN_LOG = "train.log"
"""Rank 0's progress lines (resumed at, each `log_every` steps' loss and samples/s, the target
reached), appended as the run trains; in a local folder only (an object store cannot append): on
one, they go to the console alone."""
PARAMS = "params.json"
"""A trial's swept values: ``{"trial_id": ..., "params": {dotted key: value}}`` (sweeps only)."""
STOPPED_BY_USER = "stopped_by_user.json"
"""Marks a trial a user stopped (who and when), written by the sweep's stopper."""
FINISHED_MARKER = "finished.json"
"""Written when the sweep has completed the trial and is about to drop its checkpoints, so that
a resumed sweep does not train it again."""
CHECKPOINT_PREFIX = "checkpoint_"
"""Every checkpoint folder's name starts so: Ray Train's ``checkpoint_<time>``, and local mode's."""
LOCAL_CHECKPOINT = "checkpoint_local"
"""Local mode's (``scaling.num_workers=0``) latest checkpoint folder; on an object store, which
cannot rename a folder, ``checkpoint_local_<step>`` named by `LOCAL_CHECKPOINT_POINTER`."""
LOCAL_CHECKPOINT_POINTER = f"{LOCAL_CHECKPOINT}.txt"
"""On an object store: the name of local mode's current checkpoint folder."""

# --- a sweep's folder -------------------------------------------------------------------------

TRIALS_DIR = "trials"
"""The folder of the trials' run folders, one per trial id."""
TRIALS_FILE = "trials.csv"
"""One row per trial (status, swept values, progress, best metric), gathered when the sweep
ends; the sweep's ``records.csv`` (`RECORDS`) then holds every trial's evaluations."""
ASHA_STATE = "asha_state.json"
"""ASHA's rungs, persisted by the sweep (Tune's restore does not keep them)."""
TUNE_DIR = "tune"
"""Ray Tune's experiment folder (its experiment state, its searcher's, its trials' own folders),
Tune's alone. A resumed Tune copies its folder's top-level ``.json`` and ``.pkl`` files to a local
staging folder and uploads them back over its folder at every save, so a file of ours there
(ASHA's rungs, the service's notes) would be reverted to what it held at the resume: ours live
beside it, in the sweep's folder."""
TUNER_STATE = "tuner.pkl"
"""In `TUNE_DIR`: Ray Tune's own experiment state: a sweep can be resumed where it is. A sweep
written before `TUNE_DIR` has it (and the rest of Tune's folder) at its top (`tune_dirs`)."""


def tune_dirs(sweep_dir):
    """Where a sweep's Tune folder may be, newest layout first: ``SWEEP_DIR/tune``, then the sweep's
    own folder (sweeps written before `TUNE_DIR`). `sweep_dir` as in `run_dir_of`."""
    return [sweep_dir / TUNE_DIR, sweep_dir]


SUBMISSION = "submission.json"
"""Written by the study service into a study's folder when it submits the study as a Ray job."""
NOTES = "notes.json"
"""A study's notes and tags, and its trials' (written by the study service; they travel with the
folder): ``{"study": {"note": TEXT, "tags": [TAG]}, "trials": {trial_id: {"note", "tags"}}}``."""
STEER_DIR = "steer"
"""Requests to the running sweep (stop a trial, stop the sweep) and its status file."""
STATUS_FILE = "status.json"
"""In `STEER_DIR`: what the sweep and each trial are doing, with a heartbeat."""
STOP_SWEEP = "stop-sweep.json"
"""In `STEER_DIR`: a request to stop the whole sweep."""
_STOP_TRIAL = ("stop-trial-", ".json")  # in STEER_DIR: stop-trial-<trial_id>.json


def stop_trial_file(trial_id: str) -> str:
    """The name of the request file (in `STEER_DIR`) asking the sweep to stop `trial_id`."""
    prefix, suffix = _STOP_TRIAL
    return f"{prefix}{trial_id}{suffix}"


def trial_to_stop(name: str) -> str | None:
    """The trial id that a file named `name` in `STEER_DIR` asks to stop; None for another file."""
    prefix, suffix = _STOP_TRIAL
    if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
        return name[len(prefix):-len(suffix)]
    return None
