"""Reading growing files without reading them again: a cache per file keyed by (size, mtime).

A run's `records.csv` gains one row per evaluation. Its writer replaces the whole file each time
(old rows plus the new one), so the bytes before the old end are unchanged: the cache reads only
from there (a ranged read, on an object store too) after checking that the last bytes it had are
still where they were. Anything else (a file rewritten after a restart, which drops rows, or a
shorter file) is read whole again. Callers are told which case happened, so that they can push
only the new rows or start over.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pandas as pd

from scaling_study.contract import STRING_COLUMNS
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
    with loc.fs.open_input_file(loc.fs_path) as fh:
        return fh.read_at(end - start, start)


def _parse(header: bytes, body: bytes) -> pd.DataFrame:
    if not body.strip():
        return pd.DataFrame(columns=header.decode().strip().split(",") if header else [])
    dtypes = {c: str for c in STRING_COLUMNS}
    return pd.read_csv(io.BytesIO(header + body), dtype=dtypes, keep_default_na=True)


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

    def _whole(self, loc: Loc, stat: Stat) -> Table:
        data = read_range(loc, 0, stat.size) if stat.size else b""
        end = data.rfind(b"\n") + 1
        header_end = data.find(b"\n") + 1
        header = data[:header_end]
        frame = _parse(header, data[header_end:end]) if header_end else pd.DataFrame()
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
        key = str(loc)
        old = self._json.get(key)
        if old is not None and old[0] == stat:
            return old[1]
        try:
            value = json.loads(read_range(loc, 0, stat.size)) if stat.size else default
        except (OSError, ValueError):
            return old[1] if old is not None else default
        self._json[key] = (stat, value)
        return value

    def forget(self, prefix: str) -> None:
        """Drop every cached file under `prefix` (a study that went away)."""
        for store in (self._tables, self._json):
            for key in [k for k in store if k.startswith(prefix)]:
                del store[key]
