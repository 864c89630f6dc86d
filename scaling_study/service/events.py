"""Server-sent event streams: the studies list, one study, and a submitted study's Ray job log.

Every event carries an id ``EPOCH.SEQ``: the service's start (`Index.epoch`) and the sequence
number of what the client has now. A browser's EventSource sends the last id back when it
reconnects after a dropped connection (`Last-Event-ID`), and the stream resumes with only what
changed since; an id from another start of the service, or none, gets a full `snapshot` first.
Clients of one study share its reads and its messages: the files are re-read at most every
`REFRESH_S` whoever asks, and each message is made once per change (`Study.cached`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time

from starlette.concurrency import run_in_threadpool

from scaling_study.service.index import Index

TICK_S = 0.4
"""How often a stream looks for news in memory (reading files is rate-limited separately)."""
REFRESH_S = 0.5
"""A watched study's files are re-listed at most this often."""
SCAN_S = 1.0
"""The roots are re-listed at most this often while a studies list is open."""
KEEPALIVE_S = 15.0
RETRY_MS = 1000


def jsonable(value):
    """`value` with NaN and infinities as None and numpy scalars as Python numbers: JSON that
    a browser's JSON.parse reads (it has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value, **options) -> str:
    """`value` as JSON that a browser reads (see `jsonable`). Most of what the service sends is
    plain already, so that is tried first: walking a study's every evaluation costs more than
    encoding it."""
    try:
        return json.dumps(value, allow_nan=False, **options)
    except (TypeError, ValueError):  # numpy scalars, NaN
        return json.dumps(jsonable(value), default=str, allow_nan=False, **options)


def message(event: str, data, event_id: str | None = None) -> str:
    """One SSE message (`data` as JSON, or as text lines when it is a string)."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    text = data if isinstance(data, str) else dumps(data)
    lines += [f"data: {line}" for line in text.split("\n")]
    return "\n".join(lines) + "\n\n"


def resume_point(index: Index, last_event_id: str | None) -> int | None:
    """The sequence number a reconnecting client has, or None when it needs a snapshot."""
    if not last_event_id:
        return None
    epoch, _, seq = last_event_id.partition(".")
    ok = epoch == index.epoch and seq.isascii() and seq.isdigit() and len(seq) < 20  # not "²", not 10**5000
    return int(seq) if ok else None


async def studies_stream(index: Index, last_event_id: str | None, is_disconnected):
    """`snapshot` ({studies, seq}), then `update` ({studies: changed, removed: ids}) per change."""
    yield f"retry: {RETRY_MS}\n\n"
    await run_in_threadpool(index.scan, SCAN_S)
    seen = resume_point(index, last_event_id)
    if seen is None:
        studies = await run_in_threadpool(index.studies, SCAN_S)
        seen = index.seq
        yield message("snapshot", {"studies": studies, "seq": seen}, f"{index.epoch}.{seen}")
    quiet_since = time.monotonic()
    while not await is_disconnected():
        await run_in_threadpool(index.scan, SCAN_S)
        if index.seq > seen:
            changed, removed = index.changes_since(seen)
            seen = index.seq
            yield message("update", {"studies": changed, "removed": removed, "seq": seen}, f"{index.epoch}.{seen}")
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE_S:
            yield ": keepalive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(TICK_S)


async def study_stream(index: Index, sid: str, last_event_id: str | None, is_disconnected):
    """`snapshot` (the study with every evaluation), then `update` (the study with the
    evaluations first seen since the client's last event; `replaced` lists trials whose rows
    replace what the client holds) per change."""
    yield f"retry: {RETRY_MS}\n\n"
    study = await run_in_threadpool(index.get, sid, REFRESH_S)
    seen = resume_point(index, last_event_id)
    if seen is None or seen > study.seq:
        seen, text = await run_in_threadpool(_message, index, study, None)
        yield text
    quiet_since = time.monotonic()
    while not await is_disconnected():
        study = await run_in_threadpool(index.get, sid, REFRESH_S)
        if study.seq > seen:
            seen, text = await run_in_threadpool(_message, index, study, seen)
            yield text
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE_S:
            yield ": keepalive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(TICK_S)


def _message(index: Index, study, since: int | None) -> tuple[int, str]:
    """(the study's seq, the `snapshot` (since None) or `update` message that brings a client
    at `since` up to it), made once per change of the study for every client at `since`."""
    def make():
        detail = study.detail(since=since)
        event = "snapshot" if since is None else "update"
        return detail["seq"], message(event, detail, f"{index.epoch}.{detail['seq']}")

    return study.cached(("event", since), make)


async def log_stream(launcher, job_id: str, is_disconnected):
    """`log` events ({text}: what the job printed since the previous one), then `end` with the
    job's status."""
    yield f"retry: {RETRY_MS * 5}\n\n"
    try:
        async with contextlib.aclosing(launcher.tail(job_id)) as chunks:  # a page gone: stop tailing now
            async for chunk in chunks:
                if await is_disconnected():
                    return
                if chunk:
                    yield message("log", {"text": chunk})
        status = await run_in_threadpool(lambda: launcher.job({"job_id": job_id}))
        yield message("end", status)
    except Exception as exc:  # the cluster went away: say so on the page, do not break the stream
        yield message("end", {"job_id": job_id, "status": "UNKNOWN", "message": str(exc).splitlines()[0][:300]})
