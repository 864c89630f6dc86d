"""The studies under the results roots: found by listing folders, kept current incrementally.

`Index.scan` lists each root down to `MAX_DEPTH` folders (a folder that is a study is not
entered), refreshes every study it finds (cheaply: a settled study whose folder did not change
costs one listing; see `Study.refresh`), and numbers the changes so that the studies list can
push only what changed since a client's last event. `Index.get` returns one study, refreshed when
its data are older than asked, and only for an id that resolves inside a root.

A large root is listed before it is read: with a `read_budget_s`, a scan outlines the studies it
has not read yet (`Study.refresh(records=False)`: no trial's records), reads the newest of them
in full while its budget lasts, and leaves the rest to one background thread, which reads them
newest first; each study it finishes is a change of the list like any other. `get` reads an
outlined study at once.

What a study holds once read (its trials' frames: some hundred objects each) lives until the
study changes, and is not made of reference cycles: it is moved out of the garbage collector's
sight (`gc.freeze`) as each study is read. Otherwise every full collection would walk every
study read so far, pausing the whole service for longer and longer (0.2 s after 300 of the
bench's studies) while a large root is being read.
"""
from __future__ import annotations

import gc
import secrets
import threading
import time

from scaling_study.errors import UserError
from scaling_study.service.roots import NotFound, Root, Unreadable, listdir, resolve, study_id
from scaling_study.service.study import Study, classify
from scaling_study.service.tail import FileCache

MAX_DEPTH = 3
"""How deep under a root studies are looked for (`sweeps/NAME`, `results/2026/NAME`, ...)."""


class Index:
    """Every study under `roots`. Thread-safe; reads happen in the calling thread, or in the
    background for the studies a scan only outlined and for `studies(wait=False)`."""

    def __init__(self, roots: list[Root], max_depth: int = MAX_DEPTH, read_budget_s: float | None = None):
        self.roots = roots
        self.max_depth = max_depth
        self.read_budget_s = read_budget_s
        """Seconds from a scan's start within which it reads outlined studies in full; None: it
        reads every study in full, and outlines none."""
        self.files = FileCache()
        self.epoch = secrets.token_hex(4)
        """Changes with every start of the service: event ids from another start are not resumed."""
        self.seq = 0
        self.scanned = 0.0
        self._studies: dict[str, Study] = {}
        self._summaries: dict[str, dict] = {}
        self._listed: list[dict] | None = None  # the summaries, newest first, until the next change
        self._changed: dict[str, int] = {}
        self._removed: dict[str, int] = {}
        self._unread: list[str] = []  # outlined studies, newest last (the loader pops from the end)
        self.unreadable: dict[str, str] = {}
        """Roots that could not be listed at the last scan (a missing bucket, no credentials): why."""
        self._lock = threading.Lock()  # the tables above; held only to read or update them
        self._scan_lock = threading.Lock()  # one scan at a time
        self._workers: dict[str, threading.Thread] = {}  # "load", "scan": the background threads

    # --- finding studies ------------------------------------------------------------------------
    def _discover(self, root: Root) -> dict[str, tuple]:
        found = {}
        queue = [(root.loc, "", 0)]
        while queue:
            loc, rel, depth = queue.pop(0)
            entries = listdir(root, loc)
            kind = classify(entries, self.files, loc)
            if kind:
                found[study_id(root, rel)] = (rel, loc, kind, entries)
                continue
            if depth < self.max_depth:
                queue += [(loc / name, f"{rel}/{name}" if rel else name, depth + 1)
                          for name, e in sorted(entries.items()) if e.is_dir and not name.startswith(".")]
        return found

    def scan(self, max_age: float = 0.0) -> bool:
        """Find and refresh every study unless the last scan is younger than `max_age` seconds;
        True when the list changed."""
        with self._scan_lock:
            if time.monotonic() - self.scanned < max_age:
                return False
            deadline = time.monotonic() + (self.read_budget_s or 0.0)
            found, unreadable = {}, {}
            for root in self.roots:
                try:
                    studies = self._discover(root)
                    if not studies and not root.loc.is_local:
                        root.loc.check_reachable(root.label)  # an empty listing: a missing bucket?
                except UserError as exc:
                    unreadable[root.label] = str(exc)
                    studies = {}
                except OSError as exc:  # keep what this root showed before; say why it is stale
                    unreadable[root.label] = _first_line(exc)
                    studies = {sid: (s.rel, s.loc, s.kind, None) for sid, s in self._studies.items() if s.root is root}
                for sid, (rel, loc, kind, entries) in studies.items():
                    found[sid] = (root, rel, loc, kind, entries)
            changed = self._update(found, unreadable, deadline)
            self.scanned = time.monotonic()
        if self._unread:
            self._start("load", self._load_unread)
        return changed

    def _update(self, found: dict, unreadable: dict[str, str], deadline: float) -> bool:
        studies = {}
        for sid, (root, rel, loc, kind, entries) in found.items():
            with self._lock:
                study = self._studies.get(sid)
                if study is None or study.kind != kind:
                    study = self._studies[sid] = Study(root, rel, loc, kind, self.files)
            self._refresh(study, entries, unreadable, full=self.read_budget_s is None)
            studies[sid] = study
        unread = sorted((sid for sid, s in studies.items() if not s.loaded), key=lambda sid: studies[sid].updated_ns)
        if unread and time.monotonic() < deadline:  # time left: read the newest in full now
            while unread and time.monotonic() < deadline:
                sid = unread.pop()
                self._refresh(studies[sid], found[sid][4], unreadable, full=True)
            gc.freeze()  # see the module's docstring
        with self._lock:
            seq = self.seq + 1
            for sid in set(self._studies) - set(studies):
                self._summaries.pop(sid, None)
                self.files.forget(str(self._studies.pop(sid).loc))
                self._removed[sid] = seq
                self._listed = None
            for sid, study in studies.items():
                self._removed.pop(sid, None)
                self._note(sid, study, seq)
            self._unread = unread
            self.unreadable = unreadable
            changed = any(s == seq for s in self._changed.values()) or any(s == seq for s in self._removed.values())
            if changed:
                self.seq = seq
        return changed

    def _refresh(self, study: Study, entries, unreadable: dict[str, str], full: bool) -> None:
        """Refresh `study` in full or (not read yet) from its outline; a records file that does
        not parse leaves it an outline, unless every study is to be read at once (no budget)."""
        try:
            try:
                study.refresh(entries, records=full)
            except ValueError:
                if self.read_budget_s is None:
                    raise
                study.refresh(entries, records=False)
        except OSError as exc:
            unreadable.setdefault(study.root.label, _first_line(exc))

    def _note(self, sid: str, study: Study, seq: int) -> None:
        """Record `study`'s summary as change `seq` if it differs from the last one (lock held)."""
        summary = study.summary()
        old = self._summaries.get(sid)
        if summary is not old and summary != old:
            self._summaries[sid] = summary
            self._changed[sid] = seq
            self._listed = None

    # --- in the background --------------------------------------------------------------------
    def _start(self, name: str, target) -> None:
        with self._lock:
            worker = self._workers.get(name)
            if worker is None or not worker.is_alive():
                self._workers[name] = threading.Thread(target=target, name=f"index-{name}", daemon=True)
                self._workers[name].start()

    def _load_unread(self) -> None:
        """Read the outlined studies in full, newest first, each one a change of the list."""
        while True:
            with self._lock:
                if not self._unread:
                    return
                sid = self._unread.pop()
                study = self._studies.get(sid)
            if study is None or study.loaded:
                continue
            try:
                study.refresh()
            except (OSError, ValueError):  # gone, or a file that does not parse: the others go on
                continue  # it stays an outline; the next scan comes back to it
            self._loaded(sid, study)

    def _loaded(self, sid: str, study: Study) -> None:
        gc.freeze()  # see the module's docstring
        with self._lock:
            if self._studies.get(sid) is study and sid in self._summaries:  # listed by a scan
                self._note(sid, study, self.seq + 1)
                if self._changed.get(sid) == self.seq + 1:
                    self.seq += 1

    # --- reading ------------------------------------------------------------------------------
    def studies(self, max_age: float = 0.0, wait: bool = True) -> list[dict]:
        """Every study's summary, newest update first. `wait=False` answers from memory at once
        when the roots have been listed before, and re-lists them in the background if that was
        longer than `max_age` seconds ago."""
        if wait or not self.scanned:
            self.scan(max_age)
        elif time.monotonic() - self.scanned >= max_age:
            self._start("scan", lambda: self.scan(max_age))
        with self._lock:
            if self._listed is None:
                self._listed = sorted(self._summaries.values(), key=lambda s: -(s["updated"] or 0))
            return self._listed

    def changes_since(self, seq: int) -> tuple[list[dict], list[str]]:
        """(summaries changed after `seq`, ids removed after it)."""
        with self._lock:
            changed = [self._summaries[sid] for sid, s in self._changed.items() if s > seq and sid in self._summaries]
            removed = [sid for sid, s in self._removed.items() if s > seq]
        return changed, removed

    def get(self, sid: str, max_age: float = 0.0) -> Study:
        """The study `sid`, read in full and refreshed if its data are older than `max_age`
        seconds. NotFound for an id outside the roots or a folder that is not a study."""
        root, rel, loc = resolve(self.roots, sid)
        with self._lock:
            study = self._studies.get(sid)
        if study is None:
            kind = classify(listdir(root, loc), self.files, loc)
            if kind is None:
                raise NotFound(f"study {sid!r}: no sweep or run there")
            study = Study(root, rel, loc, kind, self.files)
            with self._lock:
                study = self._studies.setdefault(sid, study)
        try:
            if not study.loaded:
                study.refresh()
                self._loaded(sid, study)
            elif time.monotonic() - study.refreshed >= max_age:
                with study.lock:  # clients asking together: the first reads, the others find it fresh
                    if time.monotonic() - study.refreshed >= max_age:
                        study.refresh()
        except ValueError as exc:  # a records file that is not CSV, or not UTF-8
            raise Unreadable(f"study {sid!r}: a file of its folder does not parse ({_first_line(exc)[:200]})") from None
        return study


def _first_line(exc: OSError) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
