"""Results roots, study ids, and listing folders without leaving a root.

A study id is ``"<root index>:<path inside the root>"`` (``"0:lamb_lr_batch_small"``,
``"1:2026/quickstart"``; ``"0:"`` when the root itself is a study). `resolve` turns an id back
into a location only inside the configured roots: no absolute paths, no ``..`` or ``.``
segments, no backslashes or NUL bytes, and, on a local disk, no symlink whose target lies
outside the root.
"""
from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from scaling_study.errors import UserError
from scaling_study.service.tail import Stat
from scaling_study.storage import Loc


class NotFound(UserError):
    """No study (or trial, or table) by that name inside the roots; the API answers 404."""


@dataclass(frozen=True)
class Root:
    """One results root: a local folder or an object-store URI, as the user gave it."""

    index: int
    loc: Loc
    label: str

    @property
    def real(self) -> str | None:
        """The root's real path (symlinks resolved) on a local disk; None on an object store."""
        return os.path.realpath(self.loc.local) if self.loc.is_local else None

    def contains(self, loc: Loc) -> bool:
        """Whether `loc` lies inside this root once symlinks are resolved (local disks)."""
        if not self.loc.is_local:
            return True  # object stores have no symlinks; ids are checked segment by segment
        real, top = os.path.realpath(loc.local), self.real
        return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def parse_roots(values: list[str]) -> list[Root]:
    """The roots in order; UserError naming a value that is not a folder path or a results URI."""
    roots = []
    for i, value in enumerate(values):
        try:
            roots.append(Root(i, Loc(value), value))
        except ValueError as exc:
            raise UserError(f"results root {value!r}: {exc}") from None
    return roots


def study_id(root: Root, rel: str) -> str:
    return f"{root.index}:{rel}"


def _check_rel(rel: str, sid: str) -> None:
    if rel == "":
        return
    bad = ("\\" in rel or "\x00" in rel or rel.startswith("/") or "://" in rel
           or any(part in ("", ".", "..") for part in rel.split("/")))
    if bad:
        raise NotFound(f"study {sid!r}: not a path inside a results root")


def resolve(roots: list[Root], sid: str) -> tuple[Root, str, Loc]:
    """(root, relative path, location) of study id `sid`; NotFound unless it lies in a root."""
    index, sep, rel = sid.partition(":")
    if not sep or not index.isdigit() or int(index) >= len(roots):
        raise NotFound(f"study {sid!r}: ids are ROOT:PATH with ROOT one of 0..{len(roots) - 1}")
    root = roots[int(index)]
    _check_rel(rel, sid)
    loc = root.loc / rel if rel else root.loc
    if not root.contains(loc):
        raise NotFound(f"study {sid!r}: not a path inside a results root")
    return root, rel, loc


def child(root: Root, loc: Loc, name: str) -> Loc:
    """`loc / name` for a plain file or folder name; NotFound for anything else (a trial id or
    table name from a request goes through here)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise NotFound(f"{name!r}: not a plain name")
    out = loc / name
    if not root.contains(out):
        raise NotFound(f"{name!r}: not inside the results root")
    return out


@dataclass(frozen=True)
class Entry:
    """One name in a folder listing."""

    name: str
    is_dir: bool
    stat: Stat


def listdir(root: Root, loc: Loc) -> dict[str, Entry]:
    """The entries of folder `loc` by name (none if it is missing). On a local disk a symlink
    that leads out of `root` is left out, as if it were not there."""
    if loc.is_local:
        return _list_local(root, os.fspath(loc))
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
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return out
    for entry in entries:
        try:
            if entry.is_symlink() and not root.contains(Loc(entry.path)):
                continue
            st = entry.stat()
            out[entry.name] = Entry(entry.name, entry.is_dir(), Stat(st.st_size, st.st_mtime_ns))
        except OSError:  # removed while listing
            continue
    return out
