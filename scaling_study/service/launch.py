"""Submitting a search space from the service: a shipped one or an uploaded one, checked exactly
as the CLI checks it (`tune.space.load_space`), then launched as a Ray job through Ray's Job
Submission API by `tune.submit` (the cluster at `--address`, or a local Ray the service starts).

An upload is checked from memory, as if it were a file next to the shipped spaces: its `base:`
is relative to `search_spaces/`. Nothing is written for a check. Only a submission writes it, into
a temporary copy of the project that Ray ships as the job's working directory and that is removed
once Ray has packed it, whatever happens: an upload never lands in the checkout and never
outlives its request.

What a user sends is held to the project: a space's base job (shipped or uploaded, in a check
too) must lie under `jobs/` or `search_spaces/` (`BASE_FOLDERS`, through `roots.confine`); YAML
from a user (the upload, each override's value) is read as all of the project's YAML is
(`config.load.parse_yaml`: no aliases, a bounded depth); every message that echoes it is cut short.

The new study's folder gets a `submission.json` (job id, space, overrides) at once, so it shows in
the studies list before the job's sweep has written anything.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from scaling_study import layout
from scaling_study.errors import ConfigError, UserError
from scaling_study.service import plan
from scaling_study.service.roots import NotFound, Root, confine
from scaling_study.service.security import shorten
from scaling_study.service.study import SWEEP
from scaling_study.storage import Loc
from scaling_study.tune import submit as ray_jobs

MAX_UPLOAD_BYTES = 64 * 1024
"""An uploaded search space larger than this is refused unread (spaces are a few hundred bytes)."""
MAX_OVERRIDES = 64
MAX_OVERRIDE_CHARS = 1024
SPACES_DIR = ray_jobs.ROOT / "search_spaces"
BASE_FOLDERS = (ray_jobs.ROOT / "jobs", SPACES_DIR)
"""Where a submitted space's base job may come from: the project's own jobs and spaces."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\.ya?ml$")


class SubmitError(UserError):
    """A submission the service refuses; `key` names the offending key (None: the file itself)."""

    def __init__(self, message: str, key: str | None = None, source: str | None = None):
        self.key, self.message, self.source = key, message, source
        super().__init__(f"{source + ': ' if source else ''}{key + ': ' if key else ''}{message}")

    def as_json(self) -> dict:
        return {"key": self.key, "message": self.message, "source": self.source}


def shipped_spaces() -> list[dict]:
    """The project's search spaces: name and the first lines of its leading comment."""
    out = []
    for path in sorted(SPACES_DIR.glob("*.yaml")):
        if path.name.startswith("."):
            continue
        lines = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            lines.append(line.lstrip("# ").rstrip())
        out.append({"name": path.name, "description": " ".join(l for l in lines if l)})  # whole: pages wrap it
    return out


def _shipped(name: str) -> Path:
    if name not in {s["name"] for s in shipped_spaces()}:
        valid = ", ".join(s["name"] for s in shipped_spaces())
        raise SubmitError(f"{name!r} is not a shipped search space; valid: {valid}", key="space")
    return SPACES_DIR / name


def load_user_yaml(text: str, source: str, key: str | None = None):
    """`text` read as the CLI reads YAML (`config.load.parse_yaml`: safe, no aliases, bounded
    depth); SubmitError naming `source` (and `key`), the line and the problem, cut short."""
    from scaling_study.config.load import parse_yaml

    try:
        return parse_yaml(text)
    except ValueError as exc:
        raise SubmitError(shorten(exc, 300), key=key, source=source) from None


def check_upload(data: bytes, filename: str = "upload.yaml") -> dict:
    """The mapping of an uploaded space: refused when too large, not UTF-8 text, not YAML as
    `load_user_yaml` reads it, or not a mapping (errors as the CLI's loader words them)."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise SubmitError(f"{len(data)} bytes; an uploaded search space may have at most {MAX_UPLOAD_BYTES}",
                          source=filename)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmitError("not UTF-8 text", source=filename) from None
    loaded = load_user_yaml(text, filename)
    if not isinstance(loaded, dict):
        raise SubmitError(f"expected a mapping of keys, got {type(loaded).__name__}", key="<top>", source=filename)
    return loaded


def check_overrides(overrides: list[str]) -> None:
    """Overrides are few, short, KEY=VALUE, and their values YAML without aliases."""
    if len(overrides) > MAX_OVERRIDES:
        raise SubmitError(f"{len(overrides)} items; at most {MAX_OVERRIDES}", key="overrides")
    for item in overrides:
        if "=" not in item or len(item) > MAX_OVERRIDE_CHARS:
            raise SubmitError(f"{shorten(item, 80)!r}: overrides are KEY=VALUE of at most {MAX_OVERRIDE_CHARS} "
                              "characters, e.g. set.train.steps=20", key="overrides")
        load_user_yaml(item.partition("=")[2], "overrides", key=shorten(item.partition("=")[0], 80))


@dataclass(frozen=True)
class Checked:
    """A space that passed the CLI's checks: its file, name and overrides."""

    path: Path
    """The shipped space's file; for an upload, where it was checked as if it lay."""
    name: str
    overrides: tuple[str, ...]
    shown_as: str
    """How errors and the study name the file (an upload's own name)."""
    text: str | None = None
    """An upload's text (written only into the working directory a submission ships)."""
    planned: tuple = ()
    """The trials it will run (`plan.planned_trials`): the study page lists them from submission."""
    preview: dict | None = None
    """`plan.preview`: the submit page shows it before anything runs."""


def check(space: str | None, upload: bytes | None, filename: str | None, overrides: list[str]) -> Checked:
    """Check a shipped space (`space`) or an upload exactly as `scaling-study sweep` would, with
    its base job held to `BASE_FOLDERS`. Writes nothing. Raises SubmitError naming the key."""
    from scaling_study.tune.space import load_space

    if (space is None) == (upload is None):
        raise SubmitError("give either a shipped space or an uploaded file", key="space")
    check_overrides(overrides)
    data = None
    if upload is not None:
        shown = Path(filename or "upload.yaml").name or "upload.yaml"
        data = check_upload(upload, shown)
        path = SPACES_DIR / _safe(shown)
    else:
        path, shown = _shipped(space), space
    try:
        loaded = load_space(path, list(overrides), data=data, confine_base=lambda base: confine_base(base, path))
    except ConfigError as exc:
        raise SubmitError(shorten(_shown(exc.message, path, shown)), key=shorten(exc.key, 200),
                          source=_shown(exc.source, path, shown)) from None
    except UserError as exc:  # e.g. a base job that is not YAML: the CLI's message, without server paths
        raise SubmitError(shorten(_shown(str(exc), path, shown)), source=shown) from None
    except Exception as exc:  # noqa: BLE001 - a value the checks did not foresee is still the user's file, not a 500
        raise SubmitError(shorten(f"not a valid search space ({type(exc).__name__}: {exc})"), source=shown) from None
    text = upload.decode("utf-8") if upload is not None else None
    return Checked(path, loaded.name, tuple(overrides), shown, text, tuple(plan.planned_trials(loaded)),
                   plan.preview(loaded))


def confine_base(base: Path, space: Path) -> None:
    """ConfigError unless the base job `base` of the space at `space` lies under one of
    `BASE_FOLDERS` once symlinks are resolved (`roots.confine`, the service's one check). The
    message is the same whether or not the file exists."""
    folders = [Root(i, Loc(str(folder)), folder.name) for i, folder in enumerate(BASE_FOLDERS)]
    for folder in folders:
        try:
            confine(folder, Loc(str(base)))
            return
        except (NotFound, ValueError):
            continue
    given = shorten(str(base.relative_to(space.parent)) if base.is_relative_to(space.parent) else str(base), 120)
    raise ConfigError("base", f"{given!r} is not a job file of this project; a base job must be under "
                              f"{' or '.join(f.label + '/' for f in folders)} (relative to this file's folder, "
                              "e.g. ../jobs/sweep_base_tiny.yaml)", str(space))


def _safe(name: str) -> str:
    return name if _NAME.match(name) else "space.yaml"


def _shown(text: str | None, path: Path, shown: str) -> str | None:
    """`text` naming files as the user knows them: the upload by its name, the project's files
    relative to the project (no server paths in answers)."""
    if not text:
        return text
    text = text.replace(str(path), shown)
    return text.replace(str(ray_jobs.ROOT) + os.sep, "").replace(str(ray_jobs.ROOT), ".")


@contextlib.contextmanager
def working_dir(checked: Checked):
    """(project folder, the space's file in it) for Ray to ship: the project itself for a
    shipped space; for an upload, a temporary copy of what Ray would ship (without
    `tune.submit.EXCLUDES`) with the upload in its `search_spaces/`, removed on leaving."""
    if checked.text is None:
        yield ray_jobs.ROOT, checked.path
        return
    tmp = Path(tempfile.mkdtemp(prefix="scaling-study-upload-"))
    try:
        project = tmp / "project"
        shutil.copytree(ray_jobs.ROOT, project, ignore=_shipped_only, symlinks=True)
        target = project / checked.path.relative_to(ray_jobs.ROOT)
        target.write_text(checked.text, encoding="utf-8")
        yield project, target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _shipped_only(folder: str, names: list[str]) -> list[str]:
    """`shutil.copytree`'s ignore: what Ray would not ship (`tune.submit.excluded`)."""
    return [n for n in names if _excluded(Path(folder) / n)]


def _excluded(path: Path) -> bool:
    try:
        return ray_jobs.excluded(path)
    except ValueError:  # a link that leads out of the project: not part of it
        return True


RAY_STOPPED = "RAY_STOPPED"
RAY_STOPPED_MESSAGE = ("Ray stopped: the local Ray this service started is no longer running. The study's results "
                       "stay readable here; the next submission starts a fresh Ray (resume the sweep to continue it)")
"""The status of a study whose job ran on the service's local Ray after that Ray stopped."""


class Launcher:
    """Submits checked spaces as Ray jobs and reads their status and logs.

    `address` is the Job Submission API of a cluster (http://HOST:8265); None starts a local Ray
    (`local_ray.LocalRay`, a `ray start --head` of its own, never Ray inside this process) on the
    first submission, and a fresh one on the next submission after it stopped: the service
    outlives the Ray it submits to. `close` stops the local Ray."""

    def __init__(self, address: str | None = None):
        self.address = address
        self._client = None
        self._local = None  # the LocalRay, when this service started one
        self._lock = threading.Lock()

    def job_address(self, *, start: bool = True) -> str | None:
        """The Job Submission API jobs go to; with `start`, a local Ray is started where none runs
        (the first time, or after the last one stopped). None: no local Ray runs and `start` is off."""
        if self.address:
            return self.address
        from scaling_study.service.local_ray import LocalRay

        with self._lock:
            if self._local is not None and not self._local.running():
                self._local.stop()  # its remaining processes, and its folder
                self._local, self._client = None, None
            if self._local is None and start:
                self._local = LocalRay().start()
            return self._local.url if self._local is not None else None

    def ray_stopped(self) -> bool:
        """Whether the local Ray this service started has stopped (and none runs since)."""
        with self._lock:
            return not self.address and self._local is not None and not self._local.running()

    def client(self, *, start: bool = True):
        address = self.job_address(start=start)
        if address is None:
            raise NotFound(RAY_STOPPED_MESSAGE)
        with self._lock:
            if self._client is None:
                self._client = ray_jobs.connect(address)
            return self._client

    def close(self) -> None:
        """Stop the local Ray this service started, if any (every process of it)."""
        with self._lock:
            if self._local is not None:
                self._local.stop()
                self._local, self._client = None, None

    def submit(self, checked: Checked, root: Root) -> dict:
        """Submit `checked` with its results under `root`; returns the submission record."""
        study = root.loc / checked.name
        if study.exists():
            raise SubmitError(f"{checked.name!r} exists already in results root {root.index}; choose another "
                              "name with the override name=NEW_NAME", key="name")
        with working_dir(checked) as (project, path):
            job_id = ray_jobs.submit(path, self.job_address(), overrides=list(checked.overrides),
                                     storage=str(root.loc), out=lambda _: None, root=project)
        record = {"job_id": job_id, "kind": SWEEP, "space": checked.shown_as, "overrides": list(checked.overrides),
                  "name": checked.name, "submitted_at": time.time(), "address": self.address or "local",
                  "planned": list(checked.planned)}
        (study / layout.SUBMISSION).write_text(json.dumps(record))
        return record

    def job(self, submission: dict) -> dict:
        """Status and message of the study's job (only jobs of this service's cluster); never
        starts a Ray: with the service's local Ray stopped, the status is `RAY_STOPPED`."""
        job_id = submission.get("job_id")
        if not job_id:
            raise NotFound("this study was not submitted by the service")
        if not self.address and (self.ray_stopped() or self.job_address(start=False) is None):
            return {"job_id": job_id, "status": RAY_STOPPED, "message": RAY_STOPPED_MESSAGE}
        try:
            info = self.client(start=False).get_job_info(job_id)
        except (RuntimeError, UserError, ConnectionError) as exc:
            if self.ray_stopped():
                return {"job_id": job_id, "status": RAY_STOPPED, "message": RAY_STOPPED_MESSAGE}
            raise NotFound(f"job {job_id}: not known to this service's Ray ({str(exc).splitlines()[0]})") from None
        return {"job_id": job_id, "status": str(info.status.value), "message": info.message or ""}

    async def tail(self, job_id: str):
        """The job's log as it grows (chunks of text, each only what is new), until the job ends.

        Ray's `JobSubmissionClient.tail_job_logs`: the dashboard reads the job's log file from its
        first line, then each line as it is written (a chunk of up to 10 lines), and closes the
        stream once the job has ended and the file is read to its end. Nothing is read twice, and
        it runs on the event loop (aiohttp, a WebSocket), so no thread waits on the cluster."""
        from starlette.concurrency import run_in_threadpool

        client = await run_in_threadpool(lambda: self.client(start=False))  # a log never starts a Ray
        async with contextlib.aclosing(client.tail_job_logs(job_id)) as chunks:  # a page gone: close the socket
            async for chunk in chunks:
                yield chunk
