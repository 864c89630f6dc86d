"""Notes and tags on studies and trials, kept in the study's own folder (`layout.NOTES`), written
through `Loc` so that they travel with the folder and work on object stores too.

Everything a request brings is checked here: a note is text of at most `MAX_NOTE` characters, tags
are at most `MAX_TAGS` short words (`TAG`). The file is read and rewritten whole under one lock per
service (several pages saving at once keep each other's notes).
"""
from __future__ import annotations

import json
import re
import threading

from scaling_study import layout
from scaling_study.errors import UserError
from scaling_study.service.roots import child
from scaling_study.service.study import Study

MAX_NOTE = 4000
MAX_TAGS = 20
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+\-]{0,31}$")
_LOCK = threading.Lock()


class BadNote(UserError):
    """A note or tags that are not valid; the API answers 400 with the message."""


def checked(body) -> dict:
    """`{note, tags}` from a request body, or BadNote naming the key and what is valid."""
    if not isinstance(body, dict) or set(body) - {"note", "tags"}:
        raise BadNote('the body is {"note": TEXT, "tags": [TAG, ...]}')
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise BadNote(f"note: text of at most {MAX_NOTE} characters")
    tags = body.get("tags", [])
    if not isinstance(tags, list) or len(tags) > MAX_TAGS or not all(isinstance(t, str) and TAG.match(t) for t in tags):
        raise BadNote(f"tags: at most {MAX_TAGS} tags, each 1-32 letters, digits or _ . : + - "
                      "(starting with a letter or digit)")
    return {"note": note.strip(), "tags": list(dict.fromkeys(tags))}


def read(study: Study) -> dict:
    """The study's notes file as `{"study": {...}, "trials": {...}}` (empty parts if none)."""
    loc = child(study.root, study.loc, layout.NOTES)
    try:
        doc = json.loads(loc.read_text()) if loc.exists() else {}
    except (OSError, ValueError):
        doc = {}
    doc = doc if isinstance(doc, dict) else {}
    return {"study": doc.get("study") if isinstance(doc.get("study"), dict) else {},
            "trials": doc.get("trials") if isinstance(doc.get("trials"), dict) else {}}


def save(study: Study, body, trial_id: str | None = None) -> dict:
    """Set the study's (or one trial's) note and tags; returns the whole notes document."""
    value = checked(body)
    with _LOCK:
        doc = read(study)
        if trial_id is None:
            doc["study"] = value
        elif value["note"] or value["tags"]:
            doc["trials"][trial_id] = value
        else:
            doc["trials"].pop(trial_id, None)
        child(study.root, study.loc, layout.NOTES).write_text(json.dumps(doc, ensure_ascii=False, indent=1))
    study.refresh()
    return doc
