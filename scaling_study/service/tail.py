"""Reading growing files without reading them again: a cache per file keyed by (size, mtime).

A run's `records.csv` gains one row per evaluation. Its writer replaces the whole file each time
(old rows plus the new one), so the bytes before the old end are unchanged: the cache reads only
from there (a ranged read, on an object store too) after checking that the last bytes it had are
still where they were. Anything else (a file rewritten after a restart, which drops rows, or a
shorter file) is read whole again. Callers are told which case happened, so that they can push
only the new rows or start over. Files read whole at the same time (a study's trials, the first
time) and sharing a header are parsed in one pass: the per-call cost of the CSV parser, not the
bytes, is what a study of many small files pays.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass

import pandas as pd

from scaling_study.contract import INT_COLUMNS, STRING_COLUMNS
from scaling_study.storage import Loc

_PROBE = 64  # bytes before the old end that must be unchanged for the new bytes to be an append


@dataclass(frozen=True)
class Stat:
    """What a listing says about a file: enough to tell whether it changed."""

    size: int
    mtime_ns: int


@dataclass
class Table:
    """A CSV file's rows as last read, and how the latest read went."""

    frame: pd.DataFrame
    stat: Stat
    appended: int
    """Rows added by the latest read (all of them when `reset`)."""
    reset: bool
    """The latest read replaced the rows rather than adding to them."""
    header: bytes = b""
    probe: bytes = b""
    consumed: int = 0
    """Bytes parsed so far (a partly written last line waits for the next read)."""


def read_range(loc: Loc, start: int, end: int) -> bytes:
    """Bytes [start, end) of a file, local or on an object store (a ranged read there)."""
    if loc.is_local:  # the plain file API: a file system object per read costs more than the read
        with open(os.fspath(loc), "rb") as fh:
            fh.seek(start)
            return fh.read(end - start)
    with loc.fs.open_input_file(loc.fs_path) as fh:
        return fh.read_at(end - start, start)


def _parse(header: bytes, body: bytes) -> pd.DataFrame:
    if not body.strip():
        return pd.DataFrame(columns=header.decode().strip().split(",") if header else [])
    dtypes = {c: str for c in STRING_COLUMNS}
    return pd.read_csv(io.BytesIO(header + body), dtype=dtypes, keep_default_na=True)


def _parse_many(header: bytes, bodies: list[bytes]) -> list[pd.DataFrame] | None:
    """`_parse` of each body, done in one pass; None where the pass cannot be split back into
    files for sure (quoted fields, blank lines) or a file's own parse could type a column
    differently (text in a column that is not the contract's text)."""
    if any(b'"' in b or b"\r" in b or b.startswith(b"\n") or b"\n\n" in b for b in bodies):
        return None
    counts = [b.count(b"\n") for b in bodies]
    frame = _parse(header, b"".join(bodies))
    if len(frame) != sum(counts) or any(frame[c].dtype.kind not in "biuf" for c in frame.columns
                                         if c not in STRING_COLUMNS):
        return None  # text where the contract has numbers or flags: each file's own parse decides
    # A count column is fractional in the pass only where some file left it blank: the others
    # read as whole numbers alone (the contract says which columns are counts).
    counts_as_float = [c for c in INT_COLUMNS if c in frame.columns and frame[c].dtype.kind == "f"]
    parts, start = [], 0
    for n in counts:
        part = frame.iloc[start:start + n]
        part.index = pd.RangeIndex(n)  # as its own parse numbers it (reset_index would copy every column)
        start += n
        whole = [c for c in counts_as_float if part[c].notna().all() and (part[c] % 1 == 0).all()]
        parts.append(part.astype({c: "int64" for c in whole}) if whole else part)
    return parts


class FileCache:
    """Parsed files by location; each read does only the work the file's change needs."""

    def __init__(self):
        self._tables: dict[str, Table] = {}
        self._json: dict[str, tuple[Stat, object]] = {}

    def csv(self, loc: Loc, stat: Stat) -> Table:
        """The rows of the CSV at `loc`, whose listing says `stat`; unchanged stat: no I/O."""
        key = str(loc)
        old = self._tables.get(key)
        if old is not None and old.stat == stat:
            old.appended, old.reset = 0, False
            return old
        table = self._append(loc, old, stat) if old is not None and stat.size > old.consumed else None
        table = table or self._whole(loc, stat)
        self._tables[key] = table
        return table

    def csv_many(self, files: list[tuple[Loc, Stat]]) -> list[Table]:
        """`csv` of each file; the files to be read whole are parsed together (see the module)."""
        out: list[Table | None] = [None] * len(files)
        whole: dict[bytes, list[tuple[int, bytes]]] = {}  # header -> (position, data) of files read whole
        for i, (loc, stat) in enumerate(files):
            old = self._tables.get(str(loc))
            if old is not None and (old.stat == stat or stat.size > old.consumed):
                out[i] = self.csv(loc, stat)  # unchanged, or (probably) an append
                continue
            data = read_range(loc, 0, stat.size) if stat.size else b""
            header = data[:data.find(b"\n") + 1]
            whole.setdefault(header, []).append((i, data))
        for header, group in whole.items():
            bodies = [data[len(header):data.rfind(b"\n") + 1] for _, data in group]
            frames = _parse_many(header, bodies) if header and len(group) > 1 else None
            for k, (i, data) in enumerate(group):
                loc, stat = files[i]
                table = self._table(stat, header, data, frames[k] if frames else None)
                self._tables[str(loc)] = out[i] = table
        return out

    def _whole(self, loc: Loc, stat: Stat) -> Table:
        data = read_range(loc, 0, stat.size) if stat.size else b""
        return self._table(stat, data[:data.find(b"\n") + 1], data)

    @staticmethod
    def _table(stat: Stat, header: bytes, data: bytes, frame: pd.DataFrame | None = None) -> Table:
        """The Table of a whole read of `data` (`frame`: its rows, when already parsed)."""
        end = data.rfind(b"\n") + 1
        if frame is None:
            frame = _parse(header, data[len(header):end]) if header else pd.DataFrame()
        return Table(frame, stat, len(frame), True, header, data[max(0, end - _PROBE):end], end)

    def _append(self, loc: Loc, old: Table, stat: Stat) -> Table | None:
        start = old.consumed - len(old.probe)
        data = read_range(loc, start, stat.size)
        if not data.startswith(old.probe) or not old.header:
            return None
        end = data.rfind(b"\n") + 1
        if end <= len(old.probe):  # nothing complete past the old end yet
            return Table(old.frame, stat, 0, False, old.header, old.probe, old.consumed)
        new = _parse(old.header, data[len(old.probe):end])
        frame = pd.concat([old.frame, new], ignore_index=True) if len(old.frame) else new
        return Table(frame, stat, len(new), False, old.header, data[max(0, end - _PROBE):end], start + end)

    def json(self, loc: Loc, stat: Stat, default=None):
        """The JSON document at `loc` (re-read only when its stat changes); `default` when it
        cannot be read or parsed (a file being replaced on a store without atomic renames)."""
        return self.parsed(loc, stat, json.loads, default)

    def parsed(self, loc: Loc, stat: Stat, parse, default=None):
        """`parse(bytes)` of the file at `loc`, as `json` reads JSON (`parse` raises ValueError
        for what it cannot read)."""
        key = str(loc)
        old = self._json.get(key)
        if old is not None and old[0] == stat:
            return old[1]
        try:
            value = parse(read_range(loc, 0, stat.size)) if stat.size else default
        except (OSError, ValueError):
            return old[1] if old is not None else default
        self._json[key] = (stat, value)
        return value

    def forget(self, prefix: str) -> None:
        """Drop every cached file under `prefix` (a study that went away)."""
        for store in (self._tables, self._json):
            for key in [k for k in list(store) if k.startswith(prefix)]:  # other threads may add
                store.pop(key, None)
