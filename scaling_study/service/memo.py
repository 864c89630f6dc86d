"""What the studies' answers kept in memory may hold together, in bytes (`Study.cached`).

Every answer made for a study (its detail for each distinct `since`, its events, figures and
dashboard) is kept until the study changes, so that many clients share one. Kept answers are
counted here across all studies, and the least recently used go first once they hold more
than `MEMO_BYTES`: memory stays bounded however many studies and `?since=` values clients ask for.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

MEMO_BYTES = 256 * 2**20
"""What every study's answers kept in memory (`Study.cached`) may hold together; the least
recently used go first."""


class MemoBudget:
    """The bytes held by the studies' memos together, least recently used first out. A study's
    memo is its `_memo` dict; an entry dropped here is popped from it (a dict's pop is atomic, and
    `Study.cached` reads an entry once), so no study's lock is taken."""

    def __init__(self, limit: int):
        self.limit, self.total = limit, 0
        self._held: OrderedDict[tuple, int] = OrderedDict()  # (study, key) -> bytes
        self._lock = threading.Lock()

    def hold(self, study, key, size: int) -> None:
        """Count `size` bytes for `study`'s entry `key`; drop the least recently used entries
        (of any study) while the total is over the limit."""
        with self._lock:
            self.total += size - self._held.pop((study, key), 0)
            self._held[(study, key)] = size
            while self.total > self.limit and len(self._held) > 1:
                (owner, old), freed = self._held.popitem(last=False)
                self.total -= freed
                owner._memo.pop(old, None)

    def used(self, study, key) -> None:
        with self._lock:
            if (study, key) in self._held:
                self._held.move_to_end((study, key))

    def forget(self, study) -> None:
        """`study` dropped its whole memo (it changed)."""
        with self._lock:
            for held in [h for h in self._held if h[0] is study]:
                self.total -= self._held.pop(held)


BUDGET = MemoBudget(MEMO_BYTES)


def size_of(value) -> int:
    """Bytes a memo entry holds, roughly: its text, or 1 KiB for a small object."""
    if isinstance(value, tuple):
        return sum(map(size_of, value))
    return len(value) if isinstance(value, (bytes, str)) else 1024
