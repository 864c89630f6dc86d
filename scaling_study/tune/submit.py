"""Running on a Ray cluster through Ray's Job Submission API (`scaling-study submit` and `jobs`).

`submit` checks the file here first (a bad file never reaches the cluster), ships the project
folder as the job's working directory (`runtime_env.working_dir`, without virtualenvs, git, data
and outputs) and runs there, on the cluster, one of:

    python -m scaling_study.cli sweep SPACE.yaml --address auto --set output.dir=STORAGE
    python -m scaling_study.cli run   JOB.yaml   --address auto --set output.dir=STORAGE

A file that names a `base` job is a search space; anything else is a job. Paths in the command
are relative to the project folder, which is the working directory on the cluster.

Results go to STORAGE: a folder every node of the cluster sees (on a one-machine cluster, any
folder), or a filesystem URI (s3://, gs://, ...). A relative output folder would land in the
job's temporary copy of the project and vanish with it, so `submit` makes it absolute here.

The cluster is found at --address, else $RAY_API_SERVER_ADDRESS, else $RAY_ADDRESS, else
http://127.0.0.1:8265 (the dashboard of `ray start --head`; it needs `ray[default]`). As for any
Ray job, `python` on the cluster's nodes must have this project's dependencies installed.
"""
from __future__ import annotations

import os
import secrets
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pathspec

from scaling_study.config import Job, load_job, load_yaml
from scaling_study.errors import ConfigError, UserError
from scaling_study.storage import Loc

ROOT = Path(__file__).resolve().parents[2]
"""The project folder: shipped to the cluster as the job's working directory."""
# gitignore patterns relative to ROOT; anchored with '/' so that `/data` (generated data) does not
# also drop the `scaling_study/data` package.
EXCLUDES = ["/.venv", "/venv", "/.git", "__pycache__", "*.egg-info", "/.pytest_cache", "/build", "/dist",
            "/runs", "/sweeps", "/data", "reports/*/dashboard.html"]
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass(frozen=True)
class Plan:
    """What `submit` sends: the command to run on the cluster and what it is."""
    kind: str
    """'sweep' (a search space) or 'run' (a job)."""
    name: str
    file: str
    """The file, relative to the project folder."""
    storage: str
    entrypoint: str

    @property
    def metadata(self) -> dict[str, str]:
        return {"scaling_study": self.kind, "name": self.name, "file": self.file, "storage": self.storage}


def default_address() -> str:
    """Ray's own order for the Job Submission API: $RAY_API_SERVER_ADDRESS, $RAY_ADDRESS, local."""
    return os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS


def plan(target: str | os.PathLike, *, overrides: Iterable[str] = (), storage: str | None = None,
         root: Path = ROOT, python: str = "python", resume: bool = False) -> Plan:
    """Check `target` completely and build the command that runs it on the cluster (`resume`:
    a sweep continues where it was stopped, `sweep --resume`)."""
    path = Path(target).resolve()
    overrides = list(overrides)
    rel = _inside(path, root, "the file")
    from scaling_study.tune.space import is_search_space, load_space

    # Data may live on the cluster's shared storage only, so the local data check of `check`
    # does not apply here; what the cluster cannot receive is refused below.
    if is_search_space(load_yaml(path)):
        space = load_space(path, overrides)
        _inside(space.base_path.resolve(), root, f"{rel}: base job")
        job = space.job_for(space.check_points()[0], space.name)  # base + set: where its data is
        kind, name, out_dir = "sweep", space.name, space.output.dir
    else:
        job = load_job(path, overrides)
        kind, name, out_dir = "run", job.name, job.output.dir
    _check_data_is_reachable(job, rel, root)
    storage = _storage(storage or out_dir)
    args = [python, "-m", "scaling_study.cli", kind, rel, "--address", "auto"]
    for item in [*overrides, f"output.dir={storage}"]:
        args += ["--set", item]
    if resume:
        if kind != "sweep":
            raise UserError(f"{rel}: only a sweep can be resumed; this file is a job")
        args.append("--resume")
    return Plan(kind=kind, name=name, file=rel, storage=storage, entrypoint=shlex.join(args))


def _inside(path: Path, root: Path, what: str) -> str:
    try:
        return path.relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UserError(f"{what} {path} is outside the project folder {root}, which is what the cluster "
                        "receives; copy it into the project (e.g. jobs/ or search_spaces/)") from None


def excluded(path: Path, root: Path = ROOT) -> bool:
    """Whether `path` (inside `root`) is left out of the shipped working directory: Ray reads
    `runtime_env.excludes` as gitignore patterns relative to the working directory."""
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    return pathspec.GitIgnoreSpec.from_lines(EXCLUDES).match_file(rel)


def _check_data_is_reachable(job: Job, source: str, root: Path) -> None:
    """Relative data paths are read on the cluster inside the shipped folder, without /data."""
    for key in ("train", "dev"):
        value = getattr(job.data, key)
        if not value or os.path.isabs(value):
            continue
        local = (root / value).resolve()
        if not local.is_relative_to(root.resolve()) or excluded(local, root):
            raise ConfigError(f"data.{key}", f"{value!r} is not in what the cluster receives (the project folder "
                                             f"without {', '.join(EXCLUDES)}); give a path every node can read",
                              source)


def _storage(value: str) -> str:
    try:
        return str(Loc(value))  # an absolute path, or an object-store URI every node reaches
    except ValueError as exc:
        raise UserError(f"--storage {exc}") from None


def connect(address: str | None = None):
    """A JobSubmissionClient for `address`; a UserError that says how to start one if none answers."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    from scaling_study import compat
    from scaling_study.ray_env import refused

    address = address or default_address()
    token = compat.use_cluster_token()  # as `ray job submit`: the cluster's token where one is given
    try:
        return JobSubmissionClient(address)
    except AuthenticationError as exc:
        raise UserError(f"--address {address}: {refused(token, exc)}") from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"--address {address}: no Ray Job Submission API answers there ({_first_line(exc)}). "
                        "Start a cluster with `ray start --head --dashboard-host 127.0.0.1` (needs "
                        "ray[default]) and use its dashboard address, e.g. http://127.0.0.1:8265") from None


def submit(target: str | os.PathLike, address: str | None = None, *, overrides: Iterable[str] = (),
           storage: str | None = None, wait: bool = False, out: Callable[[str], None] = print,
           root: Path = ROOT, resume: bool = False) -> str:
    """Check `target`, submit it as a Ray job, return the job's id. With `wait`, stream its logs
    until it ends and raise a UserError unless it SUCCEEDED. `root` is the project folder shipped
    as the job's working directory (a copy of this one holding a file that is not in it)."""
    p = plan(target, overrides=overrides, storage=storage, root=root, resume=resume)
    address = address or default_address()
    client = connect(address)
    job_id = f"scaling-study-{p.kind}-{p.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    _submit_job(client, entrypoint=p.entrypoint, submission_id=job_id, metadata=p.metadata,
                runtime_env={"working_dir": str(root), "excludes": EXCLUDES},
                entrypoint_num_cpus=0)  # the driver only waits: leave the CPUs to the workers
    note = "" if storage else " (output.dir made absolute; --storage names a folder the cluster shares)"
    out(f"{p.file} is a {'search space' if p.kind == 'sweep' else 'job'}: submitted `scaling-study {p.kind}` "
        f"as {job_id}\n  results: {p.storage}{note}\n  follow:  scaling-study jobs logs {job_id} --follow "
        f"--address {address}")
    if wait:
        status = follow(client, job_id, out)
        if status != "SUCCEEDED":
            raise UserError(f"job {job_id} ended {status}: {job_message(client, job_id)}")
    return job_id


def _submit_job(client, *, agent_wait_s: float = 60.0, **kwargs) -> None:
    """`submit_job`, retried while a cluster that has just started has no job agent yet."""
    deadline = time.monotonic() + agent_wait_s
    while True:
        try:
            client.submit_job(**kwargs)
            return
        except RuntimeError as exc:
            if "No available agent" not in str(exc):
                raise UserError(f"the cluster refused the job: {_first_line(exc)}") from None
            if time.monotonic() >= deadline:
                raise UserError(f"the cluster's job agent did not come up in {agent_wait_s:.0f}s; it fails to start "
                                "when its port (ray start --dashboard-agent-listen-port, default 52365) is taken: "
                                "see dashboard_agent.log in the head node's Ray session logs") from None
            time.sleep(1.0)


def follow(client, job_id: str, out: Callable[[str], None] = print, poll_s: float = 1.0) -> str:
    """Print the job's logs as they come until it ends; return its final status."""
    import asyncio

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out(chunk.rstrip("\n"))

    asyncio.run(tail())  # returns when the job ends and the log stream closes
    return wait_for(client, job_id, timeout_s=30.0, poll_s=poll_s)


def wait_for(client, job_id: str, timeout_s: float, poll_s: float = 1.0) -> str:
    """Poll the job's status until it is terminal (or `timeout_s` passes); return the status."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL or time.monotonic() >= deadline:
            return status
        time.sleep(poll_s)


def job_message(client, job_id: str) -> str:
    info = client.get_job_info(job_id)
    return info.message or "(no message)"


def stop(client, job_id: str, timeout_s: float = 30.0) -> str:
    """Ask Ray to stop the job (SIGTERM, then SIGKILL after Ray's grace period); wait for the end."""
    if not client.stop_job(job_id):
        return str(client.get_job_status(job_id).value)  # already ended
    return wait_for(client, job_id, timeout_s)


def describe(info) -> str:
    """One line per job for `jobs list`: id, status, kind, name, start time."""
    meta = info.metadata or {}
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.start_time / 1000)) if info.start_time else "-"
    what = f"{meta.get('scaling_study', '-')} {meta.get('name', '')}".strip()
    return f"{info.submission_id or info.job_id:<58} {str(info.status.value):<10} {what:<32} {started}"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
