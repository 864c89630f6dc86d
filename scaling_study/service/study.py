"""One study, a sweep or a run, as the service shows it: kept current by re-reading only what
changed (see `tail.py`), with a sequence number that grows whenever anything visible changes,
so that open pages receive exactly what they have not seen.

A sweep's live data are its own files: ``trials/<id>/records.csv`` (one row per evaluation, as
the Train controller writes them) and ``params.json``; ``steer/status.json`` (written by the
sweep's `tune.steer.SweepStatus`) says what the sweep and each trial are doing;
``trials/<id>/stopped_by_user.json`` marks a trial a user stopped; ``trials.csv`` (gathered when
the sweep ends) has the final word on how each trial ended. A run is a study of one trial: its
``records.csv``, with ``records.parquet`` written when it finished.
"""
from __future__ import annotations

import csv
import io
import json
import threading
import time

from scaling_study import layout
from scaling_study.contract import METRICS, PRIMARY_METRIC
from scaling_study.service.memo import BUDGET, size_of
from scaling_study.service.roots import Entry, Root, listdir, study_id
from scaling_study.service.tail import FileCache
from scaling_study.service.trial import (
    PENDING, Trial, imported_trials, note_fields, planned_count, planned_rows, progress_of, read_job,
)
from scaling_study.storage import Loc
from scaling_study.tune import steer
from scaling_study.tune.asha import state_groups

SWEEP, RUN = "sweep", "run"

# Study states.
RUNNING, FINISHED, INTERRUPTED, FAILED, SUBMITTED = "running", "finished", "interrupted", "failed", "submitted"
# Trial states, and why a trial ended in words.
STOPPED, USER_STOPPED, ERROR = "stopped", "stopped_by_user", "error"  # and trial.PENDING
ENDED = {FINISHED: "finished", STOPPED: "stopped by ASHA", USER_STOPPED: "stopped by a user",
         INTERRUPTED: "interrupted with the sweep"}

STALE_S = 6 * steer.HEARTBEAT_S
"""A sweep whose status heartbeat is older than this has lost its driver: interrupted."""
QUIET_S = 120.0
"""Without a status file (a sweep from before steering, a run): running while files changed
within this long, or within three of the run's own evaluation intervals if those are longer."""
_GATHERED = {"DONE": FINISHED, "STOPPED": STOPPED, "ERROR": ERROR}
CURVE_POINTS = 1000
"""At most this many evaluations of one trial travel in a study's detail (its curve, decimated
along the study's metric: `decimate.decimate`); the records table (CSV) keeps every row."""
def _csv_rows(data: bytes) -> list[dict]:
    """The rows of a CSV file as dicts of text, as csv.DictReader reads them (a file without
    quotes is split directly: a root of many finished sweeps has as many of these files)."""
    text = data.decode("utf-8")
    try:
        rows = [line.split(",") for line in text.splitlines()] if '"' not in text else \
            list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ValueError(str(exc)) from None
    rows = [row for row in rows if row and row != [""]]
    return [dict(zip(rows[0], row)) for row in rows[1:]] if rows else []


def read_json(data: bytes):
    """A JSON file of a results folder; ValueError (read as unreadable) for one that holds text
    no answer can carry (a lone surrogate written as `"\\ud800"`)."""
    doc = json.loads(data)
    json.dumps(doc, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError is a ValueError
    return doc


def classify(entries: dict[str, Entry], files: FileCache, loc: Loc) -> str | None:
    """SWEEP, RUN, or None for a folder that is neither (it may hold studies further down)."""
    dirs = {n for n, e in entries.items() if e.is_dir}
    if {layout.TRIALS_DIR, layout.STEER_DIR} & dirs or {layout.TUNER_STATE, layout.TRIALS_FILE} & set(entries):
        return SWEEP
    if {layout.RECORDS, layout.RECORDS_PARQUET, layout.JOB_FILE} & set(entries):
        return RUN
    submission = entries.get(layout.SUBMISSION)
    if submission is not None and not submission.is_dir:
        doc = files.parsed(loc / layout.SUBMISSION, submission.stat, read_json, {}) or {}
        return RUN if doc.get("kind") == RUN else SWEEP
    return None


_MISSING = object()


class Study:
    """A sweep or run folder under a root. `refresh` re-reads it; the rest only reads memory."""

    def __init__(self, root: Root, rel: str, loc: Loc, kind: str, files: FileCache):
        self.root, self.rel, self.loc, self.kind, self.files = root, rel, loc, kind, files
        self.id = study_id(root, rel)
        self.name = loc.name or root.label
        self.seq = 0
        self.lock = threading.RLock()
        self.refreshed = 0.0  # time.monotonic() of the last refresh
        self.trials: dict[str, Trial] = {}
        self.status = RUNNING
        self.doc: dict = {}  # steer/status.json
        self.submission: dict = {}
        self.notes: dict = {}  # notes.json: a user's notes and tags on the study and its trials
        self.gathered: dict[str, dict] = {}  # trials.csv rows by trial id
        self.rungs: list[dict] = []
        self.pending_stops: tuple[bool, set[str]] = (False, set())
        self.updated_ns = 0
        self.metric: str | None = None
        self._run_finished = False  # a run folder holds records.parquet (written when it ends)
        self.imported = False  # a run folder of records only: imported, nothing runs there
        self._signature = None
        self.loaded = False
        """Its records have been read. Until then it is an outline: what its own folder, `steer/`
        and `trials.csv` say, without any trial's records (see `refresh`)."""
        self._memo: dict = {}  # what the API answers, until what it shows changes (see `cached`)
        self._view = None
        self._locs: dict[tuple[str, ...], Loc] = {(): loc}

    def at(self, *parts: str) -> Loc:
        """The location of `parts` inside the study's folder (made once: a re-read of a study of
        many trials would otherwise spend much of its time joining paths)."""
        loc = self._locs.get(parts)
        if loc is None:
            loc = self._locs[parts] = self.at(*parts[:-1]) / parts[-1]
        return loc

    # --- reading ------------------------------------------------------------------------------
    def refresh(self, top: dict[str, Entry] | None = None, records: bool = True) -> bool:
        """Re-read what changed; True (and a new `seq`) when anything visible did. `top` is the
        study folder's listing when the caller has just made it. `records=False` (a study not
        read yet) reads only the outline: the folder's own files and `steer/`, never a trial's
        folder, so that a root of many studies can be listed before their records are read."""
        with self.lock:
            records = records or self.loaded  # a study once read is kept current, never outlined
            top = listdir(self.root, self.loc) if top is None else top
            steer_dir = listdir(self.root, self.at(layout.STEER_DIR)) if layout.STEER_DIR in top else {}
            signature = (frozenset(top.items()), frozenset(steer_dir.items()))
            settled = self.status not in (RUNNING, SUBMITTED) and (self.loaded or not records)
            if signature == self._signature and settled:
                self.refreshed = time.monotonic()
                return False  # a settled study whose folder did not change: nothing to read
            before = self._fingerprint()
            seq = self.seq + 1
            if records and not self.loaded:
                self.trials = {}  # the outline's trials make way for the trials' own folders
            read = self._read_sweep if self.kind == SWEEP else self._read_run
            rows = read(top, steer_dir, seq, records)
            self.loaded = records
            self._settle(time.time())
            changed = rows or self._fingerprint() != before
            if changed:
                self.seq = seq
            self._signature = signature
            view = (self.seq, self.updated_ns, self.loaded)  # every read file's mtime counts in updated_ns
            if view != self._view:
                BUDGET.forget(self)
                self._memo, self._view = {}, view
            self.refreshed = time.monotonic()
            return changed

    def cached(self, key, compute):
        """`compute()`, computed once until a read changes what the study shows (`key` names
        what it is): the summary, and what the API and the event streams send, shared by every
        client."""
        with self.lock:
            value = self._memo.get(key, _MISSING)  # (another study's read may evict an entry: `BUDGET`)
            if value is _MISSING:
                value = self._memo[key] = compute()
                BUDGET.hold(self, key, size_of(value))
            else:
                BUDGET.used(self, key)
            return value

    def since(self, seq: int | None) -> int | None:
        """A client's `since` as one of the few values that give different answers: None (every
        evaluation), or a sequence number from -1 to the study's own (later ones see nothing new)."""
        return None if seq is None else max(-1, min(seq, self.seq))

    def _stat_max(self, entries: dict[str, Entry]) -> None:
        for e in entries.values():
            self.updated_ns = max(self.updated_ns, e.stat.mtime_ns)

    def _json(self, folder: tuple[str, ...], entries: dict[str, Entry], name: str) -> dict:
        e = entries.get(name)
        if e is None or e.is_dir:
            return {}
        doc = self.files.parsed(self.at(*folder, name), e.stat, read_json, {})
        return doc if isinstance(doc, dict) else {}

    def _read_sweep(self, top: dict[str, Entry], steer_dir: dict[str, Entry], seq: int, records: bool) -> bool:
        self._stat_max(top)
        self._stat_max(steer_dir)
        self.doc = self._json((layout.STEER_DIR,), steer_dir, layout.STATUS_FILE)
        self.submission = self._json((), top, layout.SUBMISSION)
        self.notes = self._json((), top, layout.NOTES)  # notes and tags (service/notes.py)
        names = set(steer_dir)
        self.pending_stops = (layout.STOP_SWEEP in names, {layout.trial_to_stop(n) for n in names} - {None})
        self.gathered = self._gathered(top)
        if not records:  # the outline: the trials that steer/ and trials.csv name, not their folders
            told = [*(self.doc.get("trials") or {}), *self.gathered]
            self.trials = {t: self.trials.get(t) or Trial(t) for t in dict.fromkeys(told)}
            return False
        asha = self._json((), top, layout.ASHA_STATE)  # ASHA's rungs: for the study page
        # "group": the scheduler.group_by label of the rung's ASHA; None without groups.
        self.rungs = [{"group": label or None, "bracket": b, "milestone": m, "results": r}
                      for label, group in state_groups(asha).items()
                      for b, rungs in enumerate(group.get("brackets", [])) for m, r in rungs]
        changed = self._read_trials(seq)
        for t in [*(self.doc.get("trials") or {}), *self.gathered]:  # made by Tune, never started
            self.trials.setdefault(t, Trial(t))
        return changed

    def _read_trials(self, seq: int) -> bool:
        files, trials = [], []
        for name, entry in sorted(listdir(self.root, self.at(layout.TRIALS_DIR)).items()):
            if entry.is_dir and not name.startswith("."):
                trial = self.trials.setdefault(name, Trial(name))
                e = self._read_trial(trial)
                if e is not None:
                    files.append((self.at(layout.TRIALS_DIR, name, layout.RECORDS), e.stat))
                    trials.append(trial)
        tables = self.files.csv_many(files)  # the files read whole (a study's first read): one parse
        return any([trial.take(table, seq) for trial, table in zip(trials, tables)])

    def _gathered(self, top: dict[str, Entry]) -> dict[str, dict]:
        """trials.csv's rows by trial id, values as text ("" when empty): only their status and
        error are read, and a small file is read faster by the csv module than by pandas."""
        e = top.get(layout.TRIALS_FILE)
        if e is None or e.is_dir:
            return {}
        doc = self.files.parsed(self.at(layout.TRIALS_FILE), e.stat, _csv_rows, [])
        return {r["trial_id"]: r for r in doc if r.get("trial_id")}

    def _read_trial(self, trial: Trial) -> Entry | None:
        """The trial's params and user-stop marker; its records.csv entry, if it has one."""
        folder = (layout.TRIALS_DIR, trial.trial_id)
        entries = listdir(self.root, self.at(*folder))
        self._stat_max({k: v for k, v in entries.items() if not v.is_dir})
        trial.params = self._json(folder, entries, layout.PARAMS).get("params", trial.params)
        job = entries.get(layout.JOB_FILE)
        trial.job = self.files.parsed(self.at(*folder, layout.JOB_FILE), job.stat, read_job, {}) if job else {}
        marked = layout.STOPPED_BY_USER in entries
        trial.stopped_by_user = self._json(folder, entries, layout.STOPPED_BY_USER) if marked else None
        e = entries.get(layout.RECORDS)
        if e is None or e.is_dir:
            return None
        trial.updated_ns = e.stat.mtime_ns
        return e

    def _read_run(self, top: dict[str, Entry], steer_dir: dict[str, Entry], seq: int, records: bool) -> bool:
        self._stat_max(top)
        self.submission = self._json((), top, layout.SUBMISSION)
        self.notes = self._json((), top, layout.NOTES)  # notes and tags (service/notes.py)
        self._run_finished = layout.RECORDS_PARQUET in top
        # Records imported from elsewhere: no job of ours wrote them (a run writes job.yaml first)
        self.imported = not ({layout.JOB_FILE, layout.SUBMISSION} & set(top))
        e = top.get(layout.RECORDS)
        if e is None or e.is_dir:
            return False
        if not records:  # the outline: one trial, named after the folder until its records say
            self.trials.setdefault(self.name, Trial(self.name)).updated_ns = e.stat.mtime_ns
            return False
        table = self.files.csv(self.at(layout.RECORDS), e.stat)
        if self.imported:  # settled data, possibly of many runs: one trial per run
            return imported_trials(self.trials, table, seq, e.stat.mtime_ns)
        run_id = str(table.frame["run_id"].iloc[0]) if "run_id" in table.frame.columns and len(table.frame) else self.name
        trial = self.trials.setdefault(run_id, Trial(run_id))
        trial.updated_ns = e.stat.mtime_ns
        return trial.take(table, seq)

    # --- judging ------------------------------------------------------------------------------
    def _settle(self, now: float) -> None:
        """Decide the study's status, each trial's state and the study's metric."""
        self.metric = self._metric()
        self.status = self._sweep_status(now) if self.kind == SWEEP else self._run_status(now)
        for trial in self.trials.values():
            trial.state, trial.error = self._trial_state(trial)

    def _metric(self) -> str | None:
        named = (self.doc.get("info") or {}).get("scheduler", {}).get("metric")
        if named in METRICS:
            return named
        for row in list(self.gathered.values())[:1]:
            for key in row:
                if key.startswith("best_") and key[5:] in METRICS:
                    return key[5:]
        for trial in self.trials.values():
            task = trial.last("task")
            if task in PRIMARY_METRIC:
                return PRIMARY_METRIC[task]
        return None

    def _sweep_status(self, now: float) -> str:
        trials = self.trials.values()
        all_failed = bool(self.trials) and all(self._trial_state(t)[0] == ERROR for t in trials)
        state = self.doc.get("state")
        if state == steer.RUNNING:
            return RUNNING if now - float(self.doc.get("heartbeat_at", 0)) < STALE_S else INTERRUPTED
        if state == steer.FINISHED or (not state and self.gathered):
            return FAILED if all_failed else FINISHED
        if state in (steer.INTERRUPTED, steer.FINISHED) and self.doc.get("stopped_by_user"):
            return USER_STOPPED  # the sweep ended because a user asked it to
        if state == steer.INTERRUPTED:
            return INTERRUPTED
        if not self.trials and self.submission:
            return SUBMITTED
        return RUNNING if now - self.updated_ns / 1e9 < QUIET_S else INTERRUPTED

    def _run_status(self, now: float) -> str:
        if self._run_finished or self.imported:
            return FINISHED
        if not self.trials:
            return SUBMITTED if self.submission else INTERRUPTED
        trial = next(iter(self.trials.values()))
        quiet = QUIET_S
        if "wall_time_s" in trial.records.columns and len(trial.records) > 1:
            quiet = max(quiet, 3 * float(trial.records["wall_time_s"].diff().median()))
        return RUNNING if now - trial.updated_ns / 1e9 < quiet else INTERRUPTED

    def _trial_state(self, trial: Trial) -> tuple[str, str]:
        if trial.stopped_by_user is not None:
            return USER_STOPPED, ""
        row = self.gathered.get(trial.trial_id)
        told = (self.doc.get("trials") or {}).get(trial.trial_id)
        if self.status == USER_STOPPED and (told or {}).get("state") not in (FINISHED, STOPPED, ERROR) \
                and (row or {}).get("status") in (None, "STOPPED"):
            # Ended by the user's stop of the sweep (Tune reports it as STOPPED, with no completion of its own)
            return (USER_STOPPED if len(trial.records) or told or row else PENDING), ""
        if row and row.get("status") in _GATHERED:
            return _GATHERED[row["status"]], str(row.get("error") or "")
        if told and told.get("state") in (FINISHED, STOPPED, ERROR):
            return told["state"], str(told.get("error") or "")
        if self.kind == RUN:
            return (self.status if self.status in (FINISHED, INTERRUPTED) else RUNNING), ""
        if self.status in (RUNNING, SUBMITTED):
            return (RUNNING if len(trial.records) or told else PENDING), ""
        return INTERRUPTED, ""

    def _fingerprint(self) -> tuple:
        return (self.status, self.metric, tuple(sorted(self.pending_stops[1])), self.pending_stops[0],
                tuple((t.trial_id, t.state, t.error, len(t.records), repr(t.params)) for t in self.trials.values()),
                repr(self.rungs), repr(self.submission), repr(self.notes))

    # --- what the API shows -------------------------------------------------------------------
    def scheduler(self) -> dict:
        return dict((self.doc.get("info") or {}).get("scheduler") or {})

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.trials.values():
            counts[t.state] = counts.get(t.state, 0) + 1
        unstarted = self.unstarted()
        if unstarted:
            counts[PENDING] = counts.get(PENDING, 0) + unstarted
        return counts

    def unstarted(self) -> int:
        """Planned trials Tune has not made yet (none once the sweep ended on its own or failed)."""
        if self.kind != SWEEP or self.status in (FINISHED, FAILED):
            return 0
        return max(0, planned_count(self.doc, self.submission) - len(self.trials))

    def best(self) -> dict | None:
        if not self.metric:
            return None
        m = METRICS[self.metric]
        found = None
        for t in self.trials.values():
            value = t.best(self.metric)
            if value is not None and (found is None or m.better(value, found[1])):
                found = (t.trial_id, value)
        return {"trial_id": found[0], "value": found[1]} if found else None

    def workers(self) -> list[int]:
        return sorted(frozenset().union(*(t.workers() for t in self.trials.values())))

    def summary(self) -> dict:
        """The study as the studies list shows it (the same object until it changes: do not
        change it). `loading`: only its outline has been read so far, so `best` and
        `workers` are not known yet and its trials' states are those `steer/` and `trials.csv` give."""
        return self.cached("summary", self._summary)

    def _summary(self) -> dict:
        m = METRICS.get(self.metric) if self.metric else None
        counts = self.counts()
        return {
            "id": self.id, "kind": self.kind, "name": self.name, "root": self.root.shown,
            "path": self.root.path_of(self.loc, self.rel), "status": self.status, "counts": counts,
            "n_trials": sum(counts.values()),
            "metric": {"name": m.name, "label": m.label, "mode": m.mode} if m else None,
            "best": self.best(), "workers": self.workers(),
            "updated": self.updated_ns / 1e9 if self.updated_ns else None, "seq": self.seq,
            "loading": not self.loaded, "imported": self.imported,
            **note_fields(self.notes),
        }

    def trial_row(self, t: Trial) -> dict:
        """One trial as the study page's table shows it."""
        sched = self.scheduler()
        time_attr = sched.get("time_attr") or "samples"
        goal = sched.get("max_t") if sched.get("name") == "asha" else None
        done = t.last(time_attr)
        budget, progress = progress_of(t, time_attr, goal, finished=t.state == FINISHED)
        return {
            "trial_id": t.trial_id, "params": t.params, "state": t.state,
            "ended": t.error if t.state == ERROR else ENDED.get(t.state, ""), "error": t.error,
            "samples": t.last("samples"), "time_attr": time_attr, "progress_value": done,
            "max_t": goal, "budget": budget, "progress": progress, "n_evals": len(t.records),
            "metric": t.best(self.metric), "last_metric": t.last(self.metric) if self.metric else None,
            "num_workers": t.last("num_workers"), "train_time_s": t.last("train_time_s"),
            "stop_requested": t.trial_id in self.pending_stops[1],
            **note_fields(self.notes, t.trial_id),
            "updated": t.updated_ns / 1e9 if t.updated_ns else None,
        }

    def detail(self, since: int | None = None, evaluations: bool = True) -> dict:
        """The study with its trials and, unless `evaluations` is False, their evaluations
        (only those first seen after sequence number `since`, when given; at most
        `CURVE_POINTS` per trial, see `Trial.rows_since`)."""
        with self.lock:
            return self._detail(since, evaluations)

    def _detail(self, since: int | None, evaluations: bool) -> dict:
        out = dict(self.summary())
        out.update(scheduler=self.scheduler(), rungs=self.rungs, submission=self.submission,
                   stop_requested=self.pending_stops[0],
                   trials=[self.trial_row(t) for t in self.trials.values()]
                   + planned_rows(self.unstarted(), self.submission.get("planned"), self.trials.values()))
        if evaluations:
            out["evaluations"], out["replaced"] = {}, []
            for t in self.trials.values():
                rows, replaced = t.rows_since(since if since is not None else -1, CURVE_POINTS, self.metric)
                if rows or (replaced and since is not None):  # a trial with no rows yet has nothing to send
                    out["evaluations"][t.trial_id] = rows
                if replaced and since is not None:
                    out["replaced"].append(t.trial_id)
        return out
