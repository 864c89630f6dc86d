"""Two Ray nodes on this machine (a head and a second node started with `ray start --address`,
one CPU each), results on S3: a 2-worker run has a worker on each node; the second node's raylet
is SIGKILLed mid-run; when the node is back the run goes on from its last checkpoint and finishes,
every evaluation recorded once."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import tiny_job_data
from scaling_study.service.local_ray import processes, terminate
from scaling_study.storage import Loc, read_csv

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

BIN = Path(sys.executable).parent
MARKER = "SCALING_STUDY_TEST_NODE"
TOKEN_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids(marker: str, name: bytes = b"") -> list[int]:
    return processes(marker, MARKER, name)


def _kill_all(markers, grace_s=5.0) -> list[int]:
    return terminate(lambda: [pid for m in markers for pid in processes(m, MARKER)], grace_s)


class Cluster:
    """A head and worker nodes on 127.0.0.1, each node's processes marked so it can be killed alone."""

    def __init__(self):
        self.temp = tempfile.mkdtemp(prefix="ssmn")
        self.gcs = f"127.0.0.1:{_free_port()}"
        self.markers = []
        self.env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", *TOKEN_ENV)}
        self.env.update({"PATH": f"{BIN}{os.pathsep}{self.env.get('PATH', '')}", "RAY_AUTH_MODE": "token"})

    def _start(self, *args) -> str:
        marker = uuid.uuid4().hex
        self.markers.append(marker)
        cmd = [str(BIN / "ray"), "start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
               "--dashboard-agent-listen-port", str(_free_port()), "--disable-usage-stats", *args]
        done = subprocess.run(cmd, env={**self.env, MARKER: marker}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return marker

    def head(self) -> str:
        subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=self.env, capture_output=True,
                       timeout=60, check=True)
        return self._start("--head", "--port", self.gcs.rsplit(":", 1)[1], "--include-dashboard", "false",
                           "--temp-dir", self.temp)

    def node(self) -> str:
        return self._start("--address", self.gcs)

    def stop(self) -> list[int]:
        left = _kill_all(self.markers)
        shutil.rmtree(self.temp, ignore_errors=True)
        return left


@pytest.fixture
def cluster(s3):
    c = Cluster()
    try:
        c.head()
        yield c
    finally:
        assert c.stop() == [], "cluster processes still running"


def _wait(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.5)


def test_a_run_survives_its_second_node_being_killed_and_resumes_when_it_returns(cluster, s3, synth_dir, tmp_path):
    second = cluster.node()
    storage = f"{s3}/multinode"
    job = tiny_job_data(synth_dir, name="twonodes", scaling={"num_workers": 2, "placement_timeout_s": 180},
                        train={"steps": 40}, eval={"every_steps": 4},
                        output={"dir": storage, "max_failures": 2})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", *TOKEN_ENV)}
    run = subprocess.Popen([sys.executable, "-m", "scaling_study.cli", "run", str(path), "--address", cluster.gcs],
                           env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    records = Loc(storage) / "twonodes" / "records.csv"
    try:
        _wait(lambda: records.is_file() and len(read_csv(records)) >= 2, 150, "two evaluations before the kill")
        raylets = _pids(second, b"raylet")
        assert raylets, "the second node has no raylet"
        for pid in raylets:
            os.kill(pid, signal.SIGKILL)  # the node is lost mid-run
        time.sleep(5)
        cluster.node()  # ... and comes back (a new node on the same machine)
        out, _ = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, out[-4000:]
    steps = list(read_csv(records)["step"])
    assert steps == list(range(4, 41, 4)), f"each evaluation once, in order: {steps}"
    assert "resumed at" in out, out[-4000:]  # the restarted workers continued from a checkpoint
