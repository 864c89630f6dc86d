"""Submitting a search space from the service: a shipped one or an uploaded one, checked exactly
as the CLI checks it (`tune.space.load_space`), then launched as a Ray job through Ray's Job
Submission API by `tune.submit` (the cluster at `--address`, or a local Ray the service starts).

An upload must be a file inside the project folder for Ray to ship it with the job, and its
`base:` is relative to its own folder as for a shipped space: it is written next to the shipped
spaces under a hidden name, checked, submitted, and removed again (Ray has packed it by then).
The new study's folder gets a `submission.json` (job id, space, overrides) at once, so it shows in
the studies list before the job's sweep has written anything.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path


from scaling_study import layout
from scaling_study.errors import ConfigError, UserError
from scaling_study.service import plan
from scaling_study.service.roots import NotFound, Root
from scaling_study.service.study import SWEEP
from scaling_study.tune import submit as ray_jobs

MAX_UPLOAD_BYTES = 64 * 1024
"""An uploaded search space larger than this is refused unread (spaces are a few hundred bytes)."""
SPACES_DIR = ray_jobs.ROOT / "search_spaces"
_UPLOAD_PREFIX = ".upload-"
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


def check_upload(data: bytes, filename: str = "upload.yaml") -> None:
    """Refuse an upload that is too large or not text before anything is written. Its YAML is
    read afterwards by the CLI's own loader (`config.load_yaml`: the safe loader), so a
    malformed file gets the CLI's error."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise SubmitError(f"{len(data)} bytes; an uploaded search space may have at most {MAX_UPLOAD_BYTES}",
                          source=filename)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmitError("not UTF-8 text", source=filename) from None


@dataclass(frozen=True)
class Checked:
    """A space that passed the CLI's checks: its file, name and overrides."""

    path: Path
    name: str
    overrides: tuple[str, ...]
    shown_as: str
    """How errors and the study name the file (an upload's own name, not its temporary one)."""
    planned: tuple = ()
    """The trials it will run (`plan.planned_trials`): the study page lists them from submission."""
    preview: dict | None = None
    """`plan.preview`: the submit page shows it before anything runs."""


def check(space: str | None, upload: bytes | None, filename: str | None, overrides: list[str]) -> Checked:
    """Check a shipped space (`space`) or an upload exactly as `scaling-study sweep` would.
    The upload's file stays in place until `discard`. Raises SubmitError naming the key."""
    from scaling_study.tune.space import load_space

    if (space is None) == (upload is None):
        raise SubmitError("give either a shipped space or an uploaded file", key="space")
    for item in overrides:
        if "=" not in item:
            raise SubmitError(f"{item!r}: overrides are KEY=VALUE, e.g. set.train.steps=20", key="overrides")
    if upload is not None:
        shown = Path(filename or "upload.yaml").name
        check_upload(upload, shown)
        path = SPACES_DIR / f"{_UPLOAD_PREFIX}{secrets.token_hex(4)}-{_safe(shown)}"
        path.write_bytes(upload)
    else:
        path, shown = _shipped(space), space
    try:
        loaded = load_space(path, list(overrides))
    except ConfigError as exc:
        discard(path)
        raise SubmitError(exc.message, key=exc.key, source=_shown(exc.source, path, shown)) from None
    except UserError as exc:  # e.g. not YAML: the CLI's message, naming the upload
        discard(path)
        raise SubmitError(str(exc).replace(f"{path}:", "").replace(str(path), shown).strip(), source=shown) from None
    return Checked(path, loaded.name, tuple(overrides), shown, tuple(plan.planned_trials(loaded)), plan.preview(loaded))


def _safe(name: str) -> str:
    return name if _NAME.match(name) else "space.yaml"


def _shown(source: str | None, path: Path, shown: str) -> str | None:
    return source.replace(str(path), shown) if source else source


def discard(path: Path) -> None:
    """Remove an upload's file (never a shipped space)."""
    if path.name.startswith(_UPLOAD_PREFIX) and path.parent == SPACES_DIR:
        path.unlink(missing_ok=True)


class Launcher:
    """Submits checked spaces as Ray jobs and reads their status and logs.

    `address` is the Job Submission API of a cluster (http://HOST:8265); None starts a local Ray
    in this process on first use and submits to its own API."""

    def __init__(self, address: str | None = None):
        self.address = address
        self._resolved: str | None = address
        self._client = None
        self._lock = threading.Lock()

    def job_address(self) -> str:
        """The Job Submission API jobs go to (starting the local Ray the first time)."""
        with self._lock:
            if self._resolved is None:
                self._resolved = self._local_ray()
            return self._resolved

    def client(self):
        address = self.job_address()
        with self._lock:
            if self._client is None:
                self._client = ray_jobs.connect(address)
            return self._client

    @staticmethod
    def _local_ray() -> str:
        import ray

        from scaling_study.ray_env import ensure_ray

        # A job runs `python -m scaling_study.cli ...`: the local Ray's jobs use this Python.
        bin_dir = str(Path(sys.executable).parent)
        if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        ensure_ray(None)
        url = ray.init(ignore_reinit_error=True).dashboard_url
        if not url:
            raise UserError("the local Ray started without its dashboard, which serves the Job Submission API; "
                            "install ray[default]")
        return url if "://" in url else f"http://{url}"

    def submit(self, checked: Checked, root: Root) -> dict:
        """Submit `checked` with its results under `root`; returns the submission record."""
        study = root.loc / checked.name
        if study.exists():
            discard(checked.path)
            raise SubmitError(f"{study} exists already; choose another name with the override name=NEW_NAME",
                              key="name")
        try:
            job_id = ray_jobs.submit(checked.path, self.job_address(), overrides=list(checked.overrides),
                                     storage=str(root.loc), out=lambda _: None)
        finally:
            discard(checked.path)
        record = {"job_id": job_id, "kind": SWEEP, "space": checked.shown_as, "overrides": list(checked.overrides),
                  "name": checked.name, "submitted_at": time.time(), "address": self.address or "local",
                  "planned": list(checked.planned)}
        (study / layout.SUBMISSION).write_text(json.dumps(record))
        return record

    def job(self, submission: dict) -> dict:
        """Status and message of the study's job (only jobs of this service's cluster)."""
        job_id = submission.get("job_id")
        if not job_id:
            raise NotFound("this study was not submitted by the service")
        try:
            info = self.client().get_job_info(job_id)
        except (RuntimeError, UserError) as exc:
            raise NotFound(f"job {job_id}: not known to this service's Ray ({str(exc).splitlines()[0]})") from None
        return {"job_id": job_id, "status": str(info.status.value), "message": info.message or ""}

    async def tail(self, job_id: str):
        """The job's log as it grows (chunks of text, each only what is new), until the job ends.

        Ray's `JobSubmissionClient.tail_job_logs`: the dashboard reads the job's log file from its
        first line, then each line as it is written (a chunk of up to 10 lines), and closes the
        stream once the job has ended and the file is read to its end. Nothing is read twice, and
        it runs on the event loop (aiohttp, a WebSocket), so no thread waits on the cluster."""
        from starlette.concurrency import run_in_threadpool

        client = await run_in_threadpool(self.client)  # the first call may start the local Ray
        async with contextlib.aclosing(client.tail_job_logs(job_id)) as chunks:  # a page gone: close the socket
            async for chunk in chunks:
                yield chunk
