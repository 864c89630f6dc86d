"""The studies under the results roots: found by listing folders, kept current incrementally.

`Index.scan` lists each root down to `MAX_DEPTH` folders (a folder that is a study is not
entered), refreshes every study it finds (cheaply: a settled study whose folder did not change
costs one listing; see `Study.refresh`), and numbers the changes so that the studies list can
push only what changed since a client's last event. `Index.get` returns one study, refreshed when
its data are older than asked, and only for an id that resolves inside a root.
"""
from __future__ import annotations

import secrets
import threading
import time

from scaling_study.errors import UserError
from scaling_study.service.roots import NotFound, Root, listdir, resolve, study_id
from scaling_study.service.study import Study, classify
from scaling_study.service.tail import FileCache

MAX_DEPTH = 3
"""How deep under a root studies are looked for (`sweeps/NAME`, `results/2026/NAME`, ...)."""


class Index:
    """Every study under `roots`. Thread-safe; reads happen in the calling thread."""

    def __init__(self, roots: list[Root], max_depth: int = MAX_DEPTH):
        self.roots = roots
        self.max_depth = max_depth
        self.files = FileCache()
        self.epoch = secrets.token_hex(4)
        """Changes with every start of the service: event ids from another start are not resumed."""
        self.seq = 0
        self.scanned = 0.0
        self._studies: dict[str, Study] = {}
        self._summaries: dict[str, dict] = {}
        self._changed: dict[str, int] = {}
        self._removed: dict[str, int] = {}
        self.unreadable: dict[str, str] = {}
        """Roots that could not be listed at the last scan (a missing bucket, no credentials): why."""
        self._lock = threading.Lock()

    # --- finding studies ------------------------------------------------------------------------
    def _discover(self, root: Root) -> dict[str, tuple[str, object, str]]:
        found = {}
        queue = [(root.loc, "", 0)]
        while queue:
            loc, rel, depth = queue.pop(0)
            entries = listdir(root, loc)
            kind = classify(entries, self.files, loc)
            if kind:
                found[study_id(root, rel)] = (rel, loc, kind)
                continue
            if depth < self.max_depth:
                queue += [(loc / name, f"{rel}/{name}" if rel else name, depth + 1)
                          for name, e in sorted(entries.items()) if e.is_dir and not name.startswith(".")]
        return found

    def scan(self, max_age: float = 0.0) -> bool:
        """Find and refresh every study unless the last scan is younger than `max_age` seconds;
        True when the list changed."""
        with self._lock:
            if time.monotonic() - self.scanned < max_age:
                return False
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
                    unreadable[root.label] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    studies = {sid: (s.rel, s.loc, s.kind) for sid, s in self._studies.items() if s.root is root}
                for sid, (rel, loc, kind) in studies.items():
                    found[sid] = (root, rel, loc, kind)
            self.unreadable = unreadable
            changed = self._update(found)
            self.scanned = time.monotonic()
            return changed

    def _update(self, found: dict) -> bool:
        seq = self.seq + 1
        for sid in set(self._studies) - set(found):
            study = self._studies.pop(sid)
            self._summaries.pop(sid, None)
            self.files.forget(str(study.loc))
            self._removed[sid] = seq
        for sid, (root, rel, loc, kind) in found.items():
            study = self._studies.get(sid)
            if study is None or study.kind != kind:
                study = self._studies[sid] = Study(root, rel, loc, kind, self.files)
                self._removed.pop(sid, None)
            try:
                study.refresh()
            except OSError as exc:
                self.unreadable.setdefault(root.label, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            summary = study.summary()
            if summary != self._summaries.get(sid):
                self._summaries[sid] = summary
                self._changed[sid] = seq
        changed = any(s == seq for s in self._changed.values()) or any(s == seq for s in self._removed.values())
        if changed:
            self.seq = seq
        return changed

    # --- reading ------------------------------------------------------------------------------
    def studies(self, max_age: float = 0.0) -> list[dict]:
        """Every study's summary, newest update first."""
        self.scan(max_age)
        with self._lock:
            return sorted(self._summaries.values(), key=lambda s: -(s["updated"] or 0))

    def changes_since(self, seq: int) -> tuple[list[dict], list[str]]:
        """(summaries changed after `seq`, ids removed after it)."""
        with self._lock:
            changed = [self._summaries[sid] for sid, s in self._changed.items() if s > seq and sid in self._summaries]
            removed = [sid for sid, s in self._removed.items() if s > seq]
        return changed, removed

    def get(self, sid: str, max_age: float = 0.0) -> Study:
        """The study `sid`, refreshed if its data are older than `max_age` seconds. NotFound for
        an id outside the roots or a folder that is not a study."""
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
        if time.monotonic() - study.refreshed >= max_age:
            study.refresh()
        return study
