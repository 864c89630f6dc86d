"""The local Ray the study service submits to when no `--address` is given: a `ray start --head`
in a process group of its own, never Ray inside the service's process.

A process that has called `ray.init` is a Ray driver, and a driver whose cluster goes away exits
(Ray's core worker gives up after 60 s without its GCS, killing the process). The service must
outlive the Ray it submits to, so it only ever talks to this Ray over HTTP (the Job Submission
API): when the Ray dies, pages say so, results stay readable, and the next submission starts a
fresh one (`LocalRay.running`). `stop` ends exactly the processes this Ray started, found by an
environment marker they all inherit, and removes its temporary folder.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from scaling_study.errors import UserError
from scaling_study.ray_env import LEAN_LOCAL_RAY, WORKER_ENV

MARKER = "SCALING_STUDY_LOCAL_RAY"
"""An environment variable every process of the service's local Ray inherits (its value: that Ray's id)."""
START_TIMEOUT_S = 120.0
"""How long `ray start` and the Job Submission API's first answer may take."""
STOP_GRACE_S = 5.0
"""How long the Ray's processes get after SIGTERM before SIGKILL."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes(marker: str, variable: str = MARKER, command: bytes = b"") -> list[int]:
    """The processes whose environment carries `variable=marker` and whose command line holds
    `command` (Linux /proc; empty elsewhere)."""
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    needle = f"{variable}={marker}".encode()
    for entry in proc.iterdir():
        try:
            if (entry.name.isdigit() and needle in (entry / "environ").read_bytes()
                    and command in (entry / "cmdline").read_bytes()):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def terminate(find: Callable[[], list[int]], grace_s: float = STOP_GRACE_S) -> list[int]:
    """SIGTERM the processes `find()` names, SIGKILL those left after `grace_s`; the survivors."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 3.0)):
        for pid in find():
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait_s
        while find() and time.monotonic() < deadline:
            time.sleep(0.1)
    return find()


class LocalRay:
    """One `ray start --head --block` on loopback with its dashboard (the Job Submission API)."""

    def __init__(self, cpus: int | None = None):
        self.marker = uuid.uuid4().hex
        self.temp = tempfile.mkdtemp(prefix="ssray")  # short: Ray's socket paths live under it
        self.dashboard_port = _free_port()
        self.url = f"http://127.0.0.1:{self.dashboard_port}"
        self.cpus = cpus
        self.proc: subprocess.Popen | None = None
        self.log = Path(self.temp) / "ray-start.log"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "LocalRay":
        """Start it and wait (at most `timeout_s`) until its Job Submission API answers."""
        bin_dir = Path(sys.executable).parent
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
        # Jobs run `python -m scaling_study.cli ...`: this environment's Python comes first on PATH.
        env.update({MARKER: self.marker, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", **WORKER_ENV,
                    "RAY_API_SERVER_ADDRESS": self.url})
        env.update({k: v for k, v in LEAN_LOCAL_RAY.items() if k not in os.environ})
        cmd = [str(bin_dir / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
               "--port", str(_free_port()), "--dashboard-host", "127.0.0.1", "--dashboard-port",
               str(self.dashboard_port), "--include-dashboard", "true", "--dashboard-agent-listen-port",
               str(_free_port()), "--disable-usage-stats", "--temp-dir", self.temp,
               *(["--num-cpus", str(self.cpus)] if self.cpus else [])]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self._wait_for_jobs_api(timeout_s)
        return self

    def _wait_for_jobs_api(self, timeout_s: float) -> None:
        from scaling_study.tune import submit as ray_jobs

        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running():
                tail = self.log.read_text(errors="replace")[-1500:] if self.log.is_file() else ""
                self.stop()
                raise UserError(f"the service's local Ray (`ray start --head`) exited while starting:\n{tail}")
            try:
                ray_jobs.connect(self.url)
                return
            except UserError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise UserError(f"the service's local Ray did not answer on {self.url} within {timeout_s:g} s "
                                    "(its Job Submission API needs ray[default])") from None
                time.sleep(0.5)

    def running(self) -> bool:
        """Whether its `ray start --block` still runs (it exits when any of the Ray's processes dies)."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = STOP_GRACE_S) -> list[int]:
        """End every process of this Ray (SIGTERM, then SIGKILL after `grace_s`) and remove its
        folder; returns the processes still alive (none, normally)."""
        terminate(lambda: processes(self.marker) + ([self.proc.pid] if self.running() else []), grace_s)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)
        return processes(self.marker)
