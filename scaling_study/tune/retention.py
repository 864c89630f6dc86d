"""Which checkpoints a sweep keeps (`output.keep_checkpoints` of a search space).

Each trial's Ray Train run writes its checkpoints into the trial's folder, SWEEP/trials/<trial_id>/:
Ray Train's `checkpoint_<time>` folders (`output.checkpoints_to_keep` of them), or in local mode
`checkpoint_local` (on an object store `checkpoint_local_<step>`, named by `checkpoint_local.txt`).
A running trial keeps them all: a killed sweep's `--resume` continues it from the latest. Once
Tune has completed a trial (it finished, or ASHA stopped it), `CheckpointRetention` applies the
policy:

- best: every completed trial drops its checkpoints, except the last one of the best completed
  trial (by the scheduler's metric and mode, over all of its evaluations); when a better trial
  completes, the previous best's checkpoint goes.
- none: every completed trial drops its checkpoints.
- all: nothing is dropped.

A trial in its final ERROR state keeps its checkpoints: `sweep --resume` retries errored trials
from them.

Tune saves which trials are done every few seconds, so a sweep killed just after a trial
completed may restart it on `--resume`. Before dropping anything the callback therefore writes
`finished.json` into the trial's folder, and the trial driver then returns at once instead of
training again without its checkpoints.
"""
from __future__ import annotations

import json
import logging
import math
import posixpath

from ray.tune import Callback

from scaling_study.layout import CHECKPOINT_PREFIX, FINISHED_MARKER, LOCAL_CHECKPOINT_POINTER, TRIALS_DIR
from scaling_study.storage import Loc

logger = logging.getLogger(__name__)


def checkpoint_folders(run_dir: Loc) -> list[Loc]:
    """The checkpoint folders in a trial's (or run's) folder, sorted by name."""
    # Ray's checkpoint_manager_snapshot.json shares the prefix but is a file: it is left alone.
    return [d for d in Loc(run_dir).subdirs() if d.name.startswith(CHECKPOINT_PREFIX)]


def was_finished(run_dir) -> bool:
    """True when the sweep completed this trial and dropped some of its checkpoints."""
    return (Loc(run_dir) / FINISHED_MARKER).is_file()


class CheckpointRetention(Callback):
    """A Tune callback that prunes completed trials' checkpoints under `trials_dir` (see above).

    `keep` is `output.keep_checkpoints`; `metric` and `mode` are the scheduler's. The ids of the
    completed trials are part of Tune's experiment state (`get_state`), so a resumed sweep knows
    them; trials that an interrupted sweep stopped are not completed and keep their checkpoints.
    """

    def __init__(self, trials_dir: str, *, keep: str, metric: str, mode: str):
        self.trials_dir = str(trials_dir)
        self.keep, self.metric, self.mode = keep, metric, mode
        self._completed: set[str] = set()
        self._applied: dict[str, bool] = {}  # trial id -> its last checkpoint kept (this session)
        self._recheck: set[str] = set()  # pruned once, while their workers may still have been writing

    # Tune hooks ------------------------------------------------------------------------------
    def on_trial_complete(self, iteration, trials, trial, **info):
        # Called for trials that finish and for those the scheduler stops; not for errors, nor for
        # the trials an interrupted sweep stops (those keep their checkpoints for --resume).
        # Tune calls it before it stops the trial's actor: a stopped trial's workers may still
        # report a checkpoint. Look at the trials completed before once more, now.
        for trial_id in self._recheck:
            self._applied.pop(trial_id, None)
        self._recheck = {trial.trial_id}
        self._completed.add(trial.trial_id)
        self._apply(trials)

    def on_experiment_end(self, trials, **info):
        # Every trial actor is gone now: prune again what a stopped trial's workers were still
        # writing when it completed, and what an earlier, killed session left.
        self._applied.clear()
        self._apply(trials)

    def get_state(self) -> dict:
        return {"completed": sorted(self._completed)}

    def set_state(self, state: dict) -> None:
        self._completed = set(state.get("completed", ()))
        self._applied, self._recheck = {}, set()

    # the policy ------------------------------------------------------------------------------
    def best_trial(self, trials) -> str | None:
        """The id of the best completed trial by its best value of the metric (ties: the one kept)."""
        scores = {}
        for t in trials:
            value = (t.metric_analysis.get(self.metric) or {}).get(self.mode)
            if t.trial_id in self._completed and isinstance(value, (int, float)) and math.isfinite(value):
                scores[t.trial_id] = value if self.mode == "max" else -value
        if not scores:
            return None
        kept = [t for t, keep_last in self._applied.items() if keep_last and t in scores]
        top = max(scores.values())
        return next((t for t in kept if scores[t] == top), None) or max(scores, key=scores.get)

    def _apply(self, trials) -> None:
        if self.keep == "all":
            return
        best = self.best_trial(trials) if self.keep == "best" else None
        for t in trials:
            keep_last = t.trial_id == best
            if t.trial_id not in self._completed or self._applied.get(t.trial_id) == keep_last:
                continue
            try:
                prune(Loc(self.trials_dir) / t.trial_id, keep_last=keep_last, last=last_checkpoint_name(t))
            except Exception as exc:  # noqa: BLE001 - a callback that raises turns the trial into an error
                logger.warning("could not drop the checkpoints of trial %s: %s", t.trial_id, exc)
                continue
            self._applied[t.trial_id] = keep_last


def last_checkpoint_name(trial) -> str | None:
    """The folder name of the trial's last reported checkpoint (Tune's `checkpoint_path` metric,
    which Ray's TuneReportCallback adds to each report with a checkpoint)."""
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY

    path = (trial.last_result or {}).get(CHECKPOINT_PATH_KEY)
    return posixpath.basename(str(path).rstrip("/")) if path else None


def prune(run_dir: Loc, *, keep_last: bool, last: str | None = None) -> list[Loc]:
    """Delete the checkpoint folders in `run_dir`, all of them or all but the last one (named
    `last`; when that is not there, the latest found). Writes FINISHED_MARKER first, when
    anything goes. Returns the deleted folders."""
    folders = checkpoint_folders(run_dir)
    keep = None
    if keep_last and folders:
        keep = last if last in {f.name for f in folders} else _latest(run_dir, folders)
    drop = [f for f in folders if f.name != keep]
    pointer = _local_pointer(run_dir, folders)
    drop_pointer = pointer is not None and pointer.is_file() and keep != pointer.read_text().strip()
    if not drop and not drop_pointer:
        return []
    (run_dir / FINISHED_MARKER).write_text(json.dumps({"trial_id": run_dir.name, "kept": keep}))
    if drop_pointer:  # before its folder, so that a folder left by a failure is seen next time
        pointer.fs.delete_file(pointer.fs_path)
    for folder in drop:
        folder.fs.delete_dir(folder.fs_path)
    return drop


def _ray_named(name: str) -> bool:
    return name[len(CHECKPOINT_PREFIX):][:1].isdigit()  # checkpoint_<YYYY-mm-dd_HH-MM-SS.ffffff>


def _local_pointer(run_dir: Loc, folders: list[Loc]) -> Loc | None:
    """Local mode's pointer file (on an object store), when the folder holds local-mode checkpoints."""
    if all(_ray_named(f.name) for f in folders):
        return None
    return run_dir / LOCAL_CHECKPOINT_POINTER


def _latest(run_dir: Loc, folders: list[Loc]) -> str:
    """Local mode's current checkpoint, else Ray Train's newest (its names sort by time)."""
    names = [f.name for f in folders]
    pointer = _local_pointer(run_dir, folders)
    current = pointer.read_text().strip() if pointer is not None and pointer.is_file() else None
    if current in names:
        return current
    own = [n for n in names if not _ray_named(n)]
    return own[0] if own else names[-1]


def footprint(sweep_dir) -> tuple[int, list[str]]:
    """Bytes under the sweep's folder, and its checkpoint folders (`trials/<id>/checkpoint_*`)."""
    import pyarrow.fs as pafs

    loc = Loc(sweep_dir)
    root = loc.fs_path.rstrip("/") + "/"
    infos = loc.fs.get_file_info(pafs.FileSelector(loc.fs_path, recursive=True, allow_not_found=True))
    size, folders = 0, set()
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        size += info.size or 0
        parts = info.path[len(root):].split("/") if info.path.startswith(root) else []
        if len(parts) > 3 and parts[0] == TRIALS_DIR and parts[2].startswith(CHECKPOINT_PREFIX):
            folders.add("/".join(parts[:3]))
    return size, sorted(folders)


def human_size(n: float) -> str:
    """`n` bytes in B, kB, MB, GB or TB (powers of 1000, as `du --si` counts)."""
    units = ("B", "kB", "MB", "GB", "TB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n, i = n / 1000, i + 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"
