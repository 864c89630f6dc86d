"""One trial's own files as the trial page shows them: its job, its checkpoints and its log.

Every name that comes from a request (study id, trial id, checkpoint name) reaches a file only
through `roots.child` inside the study's root, and only if a listing of the folder shows it; a
trial id must also be one the study knows. Files are read through `Loc`, so a study on an object
store answers the same way.
"""
from __future__ import annotations

import os
import re
import tempfile
import zipfile

from scaling_study import layout
from scaling_study.service.roots import Entry, NotFound, child, listdir
from scaling_study.service.study import RUN, Study
from scaling_study.storage import Loc

TRIAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
"""What a trial id (Tune's `xxxxx_00000`, a run's name) may look like in a request."""
LOG_FILES = ("error.txt", "stdout", "stderr")
"""Tune's files in a trial's own folder of the experiment: the error it recorded, and the trial's
output when the sweep logs to files."""
MAX_LOG_BYTES = 256 * 1024
"""A log is sent from its end, at most this much of each file."""
MAX_JOB_BYTES = 256 * 1024


def trial_folder(study: Study, trial_id: str) -> Loc:
    """The trial's run folder (a run's own folder for a run); NotFound for an id the study does
    not have or one that is not a plain name."""
    if not TRIAL_ID.match(trial_id or "") or trial_id not in study.trials:
        raise NotFound(f"study {study.id!r} has no trial {trial_id!r}")
    if study.kind == RUN:
        return study.loc
    return child(study.root, child(study.root, study.loc, layout.TRIALS_DIR), trial_id)


def _file(study: Study, folder: Loc, name: str, entries: dict[str, Entry]) -> Loc | None:
    e = entries.get(name)
    if e is None or e.is_dir:
        return None
    return child(study.root, folder, name)


def job_text(study: Study, trial_id: str) -> str | None:
    """The trial's job.yaml as written (None when it has none yet)."""
    folder = trial_folder(study, trial_id)
    entries = listdir(study.root, folder)
    loc = _file(study, folder, layout.JOB_FILE, entries)
    if loc is None or entries[layout.JOB_FILE].stat.size > MAX_JOB_BYTES:
        return None
    return loc.read_text()


def checkpoints(study: Study, trial_id: str) -> list[dict]:
    """The trial's checkpoint folders, newest last: [{name, updated}]."""
    folder = trial_folder(study, trial_id)
    found = [e for n, e in listdir(study.root, folder).items()
             if e.is_dir and n.startswith(layout.CHECKPOINT_PREFIX)]
    found.sort(key=lambda e: (e.name, e.stat.mtime_ns))
    return [{"name": e.name, "updated": e.stat.mtime_ns / 1e9 or None} for e in found]


def checkpoint_zip(study: Study, trial_id: str, name: str | None) -> tuple[str, str]:
    """(path of a temporary zip file, download name) of checkpoint `name` (default the newest).
    The caller removes the file once sent."""
    listed = [c["name"] for c in checkpoints(study, trial_id)]
    if not listed:
        raise NotFound(f"trial {trial_id!r} keeps no checkpoint (a sweep keeps the best trial's last one; "
                       f"see output.keep_checkpoints)")
    name = name or listed[-1]
    if name not in listed:
        raise NotFound(f"trial {trial_id!r} has no checkpoint {name!r}; valid: {', '.join(listed)}")
    folder = child(study.root, trial_folder(study, trial_id), name)
    fd, path = tempfile.mkstemp(prefix="scaling-study-checkpoint-", suffix=".zip")
    os.close(fd)
    try:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            _add(z, study, folder, name, depth=0)
    except BaseException:
        os.unlink(path)
        raise
    return path, f"{trial_id}-{name}.zip"


def _add(z: zipfile.ZipFile, study: Study, folder: Loc, prefix: str, depth: int) -> None:
    if depth > 8:  # a checkpoint is a few levels deep at most; stop at anything stranger
        return
    for n, e in sorted(listdir(study.root, folder).items()):
        loc = child(study.root, folder, n)
        if e.is_dir:
            _add(z, study, loc, f"{prefix}/{n}", depth + 1)
        else:
            z.writestr(f"{prefix}/{n}", loc.read_bytes())


def log_text(study: Study, trial_id: str) -> dict:
    """{files: [{name, text, truncated}]}: the run's own log (`layout.TRAIN_LOG`: its progress
    lines), then what Tune kept of the trial's output in its folder of the experiment
    (`<trainable>_<trial_id>_...` beside `trials/`), each file's end."""
    folder = trial_folder(study, trial_id)  # a known trial
    entries = listdir(study.root, folder)
    own = _file(study, folder, layout.TRAIN_LOG, entries)
    out = [_tail(layout.TRAIN_LOG, own, entries[layout.TRAIN_LOG].stat.size)] if own is not None else []
    if study.kind == RUN:
        return {"files": out}
    tune_dirs = [n for n, e in listdir(study.root, study.loc).items()
                 if e.is_dir and f"_{trial_id}_" in f"{n}_"]
    for d in sorted(tune_dirs)[:1]:
        folder = child(study.root, study.loc, d)
        entries = listdir(study.root, folder)
        for name in LOG_FILES:
            loc = _file(study, folder, name, entries)
            if loc is not None:
                out.append(_tail(name, loc, entries[name].stat.size))
    return {"files": out}


def _tail(name: str, loc: Loc, size: int) -> dict:
    from scaling_study.service.tail import read_range

    start = max(0, size - MAX_LOG_BYTES)
    data = read_range(loc, start, size) if start else loc.read_bytes()
    return {"name": name, "text": data.decode("utf-8", errors="replace"), "truncated": start > 0}
