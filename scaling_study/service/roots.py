"""Results roots, study ids, and listing folders without leaving a root.

A study id is ``"<root index>:<path inside the root>"`` (``"0:lamb_lr_batch_small"``,
``"1:2026/quickstart"``; ``"0:"`` when the root itself is a study). `resolve` turns an id back
into a location only inside the configured roots: no absolute paths, no ``..`` or ``.``
segments, no backslashes or NUL bytes, and, on a local disk, no symlink whose target lies
outside the root. Each study has one id: the root's index is written in ASCII digits without
leading zeros (`0`, `12`), and anything else is no id.

`confine` is the one check every file the service reads from a root goes through (listings,
ids, trial and table names, the files an export reads): a location that resolves outside its
root is NotFound, as if it were not there.
"""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass

from scaling_study import layout
from scaling_study.errors import UserError
from scaling_study.service.tail import Stat
from scaling_study.storage import Loc


class NotFound(UserError):
    """No study (or trial, or table) by that name inside the roots; the API answers 404."""


class Unreadable(UserError):
    """A study whose files do not parse (records that are not CSV or not UTF-8); the API answers
    409 saying why, and the studies list shows what its folder's own files say."""


_INDEX = re.compile(r"(?:0|[1-9][0-9]{0,5})", re.ASCII)
"""A root's index as an id spells it: ASCII digits, no leading zero (one id per study)."""


@dataclass(frozen=True)
class Root:
    """One results root: a local folder or an object-store URI, as the user gave it."""

    index: int
    loc: Loc
    label: str
    remote: bool = False
    """Shown to remote clients: answers name it by `public`, never by a server path."""

    @property
    def real(self) -> str | None:
        """The root's real path (symlinks resolved) on a local disk; None on an object store."""
        return os.path.realpath(self.loc.local) if self.loc.is_local else None

    def contains(self, loc: Loc) -> bool:
        """Whether `loc` lies inside this root once symlinks are resolved (local disks)."""
        if not self.loc.is_local:
            return True  # object stores have no symlinks; ids are checked segment by segment
        try:
            real, top = os.path.realpath(loc.local), self.real
        except (OSError, ValueError):  # a NUL byte, a name the file system cannot hold: nowhere
            return False
        return real == top or real.startswith(top.rstrip(os.sep) + os.sep)

    @property
    def public(self) -> str:
        """The root as a remote client is shown it: a URI as given, a local folder by its last
        name only (no server path)."""
        return self.label if not self.loc.is_local else (os.path.basename(self.label.rstrip("/\\")) or ".")


    @property
    def shown(self) -> str:
        """The root's name in answers: as given on loopback, `public` to remote clients."""
        return self.public if self.remote else self.label

    def path_of(self, loc: Loc, rel: str) -> str:
        """Where a study at `rel` lies, as answers show it (`loc` itself on loopback)."""
        return f"{self.public}/{rel}".rstrip("/") if self.remote else str(loc)


def confine(root: Root, loc: Loc, what: str = "file") -> Loc:
    """`loc` if it lies inside `root` once symlinks are resolved; NotFound otherwise. Every file
    the service reads from a root is checked here."""
    if not root.contains(loc):
        raise NotFound(f"{what} {loc.name!r}: not inside the results root")
    return loc


def parse_roots(values: list[str], remote: bool = False) -> list[Root]:
    """The roots in order; UserError naming a value that is not a folder path or a results URI.
    `remote`: the service answers clients on other machines (no server paths in answers)."""
    roots = []
    for i, value in enumerate(values):
        try:
            roots.append(Root(i, Loc(value), value, remote))
        except ValueError as exc:
            raise UserError(f"results root {value!r}: {exc}") from None
    return roots


def study_id(root: Root, rel: str) -> str:
    return f"{root.index}:{rel}"


def _encodable(text: str) -> bool:
    """Whether `text` is a name a file can have (UTF-8, so no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_rel(rel: str, sid: str) -> None:
    if rel == "":
        return
    bad = ("\\" in rel or "\x00" in rel or rel.startswith("/") or "://" in rel or not _encodable(rel)
           or any(part in ("", ".", "..") for part in rel.split("/")))
    if bad:
        raise NotFound(f"study {sid[:200]!r}: not a path inside a results root")


def resolve(roots: list[Root], sid: str) -> tuple[Root, str, Loc]:
    """(root, relative path, location) of study id `sid`; NotFound unless it lies in a root."""
    index, sep, rel = sid.partition(":")
    if not sep or not _INDEX.fullmatch(index) or int(index) >= len(roots):
        raise NotFound(f"study {sid[:200]!r}: ids are ROOT:PATH with ROOT one of 0..{len(roots) - 1}")
    root = roots[int(index)]
    _check_rel(rel, sid)
    loc = root.loc / rel if rel else root.loc
    confine(root, loc, "study")
    return root, rel, loc


def child(root: Root, loc: Loc, name: str) -> Loc:
    """`loc / name` for a plain file or folder name; NotFound for anything else (a trial id or
    table name from a request goes through here)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name or not _encodable(name):
        raise NotFound(f"{name[:200]!r}: not a plain name")
    return confine(root, loc / name)


@dataclass(frozen=True)
class Entry:
    """One name in a folder listing."""

    name: str
    is_dir: bool
    stat: Stat


def listdir(root: Root, loc: Loc) -> dict[str, Entry]:
    """The entries of folder `loc` by name (none if it is missing). On a local disk a symlink
    that leads out of `root` is left out, as if it were not there, and so is everything in a
    folder that itself leads out of it (a study's `trials/` linked elsewhere)."""
    if loc.is_local:
        return _list_local(root, os.fspath(loc)) if root.contains(loc) else {}
    import pyarrow.fs as pafs

    infos = loc.fs.get_file_info(pafs.FileSelector(loc.fs_path, allow_not_found=True))
    out = {}
    for info in infos:
        if info.type in (pafs.FileType.File, pafs.FileType.Directory):
            name = posixpath.basename(info.path.rstrip("/"))
            out[name] = Entry(name, info.type == pafs.FileType.Directory,
                              Stat(info.size or 0, info.mtime_ns or 0))
    return out


def _list_local(root: Root, path: str) -> dict[str, Entry]:
    out = {}
    try:
        entries = list(os.scandir(path))
    except OSError:  # missing, not a folder, not readable, a name too long: nothing there
        return out
    for entry in entries:
        if not _encodable(entry.name):  # not UTF-8 on disk: no id can name it
            continue
        try:
            if entry.is_symlink():
                confine(root, Loc(entry.path))
            st = entry.stat()
            out[entry.name] = Entry(entry.name, entry.is_dir(), Stat(st.st_size, st.st_mtime_ns))
        except (OSError, NotFound):  # removed while listing, or a link out of the root: not there
            continue
    return out


# --- what an export reads ----------------------------------------------------------------------

EXPORT_READS = (layout.RECORDS, layout.RECORDS_PARQUET, layout.TRIALS_FILE, layout.JOB_FILE, layout.PARAMS)
"""The files `reports.export` may read in a results folder and in each of its trials' folders."""


def confine_export(study) -> None:
    """NotFound unless every file an export of `study` may read lies inside its root: in the
    study's folder (and, for a sweep, each trial's), its records, trials table, job and params,
    and the same in every trial folder that a listing or the records' `trial_id`s name."""
    folders = [study.loc] + [study.at(layout.TRIALS_DIR, t) for t in study.trials if study.kind == "sweep"]
    for folder in folders:
        _confine_folder(study.root, folder)


def _confine_folder(root: Root, folder: Loc) -> None:
    for name in EXPORT_READS:
        confine(root, folder / name)
    trials = confine(root, folder / layout.TRIALS_DIR)
    if not trials.is_dir():
        return
    for name in _names(root, trials) | _trial_ids(folder):
        trial = child(root, trials, name)
        for file in EXPORT_READS:
            confine(root, trial / file)


def _names(root: Root, loc: Loc) -> set[str]:
    """Every name in folder `loc`, symlinks out of the root included (to be refused, not skipped)."""
    if not loc.is_local:
        return set(listdir(root, loc))
    try:
        return set(os.listdir(loc.local))
    except OSError:
        return set()


def _trial_ids(folder: Loc) -> set[str]:
    """The trial ids the records in `folder` name: an export reads `trials/<trial_id>/job.yaml`."""
    from scaling_study.storage import read_csv, read_parquet

    ids = set()
    for name, read, only in ((layout.RECORDS, read_csv, {"usecols": ["trial_id"], "dtype": str}),
                             (layout.RECORDS_PARQUET, read_parquet, {"columns": ["trial_id"]})):
        loc = folder / name
        if not loc.is_file():
            continue
        try:
            column = read(loc, **only)["trial_id"]
        except (ValueError, KeyError, OSError):  # no such column, or not a table: nothing named
            continue
        ids |= {str(v) for v in column.dropna() if str(v)}
    return ids
