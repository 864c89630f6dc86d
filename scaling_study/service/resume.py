"""Resuming a stopped or interrupted sweep from its page: the same Ray job the service submitted,
again, with `sweep --resume` (Tune restores its state, ASHA its rungs; trials that completed are
not run again).

Only a sweep the service itself submitted from a shipped search space can be resumed here: its
`submission.json` names the space and the overrides, so the resumed sweep is the same sweep. A
sweep started elsewhere is resumed where it was started, with the same file and overrides.
"""
from __future__ import annotations

import json
import time

from scaling_study import layout
from scaling_study.service import launch
from scaling_study.service.live import Conflict
from scaling_study.service.roots import listdir
from scaling_study.service.study import INTERRUPTED, SWEEP, USER_STOPPED, Study
from scaling_study.tune import submit as ray_jobs

RESUMABLE = (INTERRUPTED, USER_STOPPED)


def resumable(study: Study) -> str | None:
    """Why the study cannot be resumed from the service (None when it can)."""
    if study.kind != SWEEP:
        return "only a sweep can be resumed"
    if study.status not in RESUMABLE:
        return f"the sweep is {study.status.replace('_', ' ')}; only a stopped or interrupted sweep resumes"
    space = study.submission.get("space")
    if not space or space not in {s["name"] for s in launch.shipped_spaces()}:
        return ("this sweep was not submitted from a shipped search space here; resume it where it was started, "
                "with the same search space and overrides")
    if not any(layout.TUNER_STATE in listdir(study.root, d) for d in layout.tune_dirs(study.loc)):
        return f"{study.loc} holds no saved sweep state ({layout.TUNE_DIR}/{layout.TUNER_STATE}) to resume from"
    return None


def resume(study: Study, launcher: launch.Launcher) -> dict:
    """Submit the study's sweep again with --resume; returns the new submission record."""
    why = resumable(study)
    if why:
        raise Conflict(f"study {study.id!r}: {why}")
    before = dict(study.submission)
    overrides = [str(o) for o in before.get("overrides") or []]
    checked = launch.check(before["space"], None, None, overrides)  # still valid, as the CLI checks it
    with launch.working_dir(checked) as (project, path):
        job_id = ray_jobs.submit(path, launcher.job_address(), overrides=overrides, storage=str(study.loc.parent),
                                 out=lambda _: None, root=project, resume=True)
    record = {**before, "job_id": job_id, "resumed_at": time.time(),
              "previous_jobs": [*before.get("previous_jobs", []), before.get("job_id")]}
    (study.loc / layout.SUBMISSION).write_text(json.dumps(record))
    study.refresh()
    return record
