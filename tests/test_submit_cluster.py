"""`submit` and `jobs` against a real Ray cluster that this module starts (`ray start --head` on
127.0.0.1) and stops.

The cluster is stopped by killing exactly the processes it started, found by an environment
marker they all inherit, not with `ray stop`, which kills every Ray process on the machine
(other test runs' local Rays included).
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from scaling_study.cli import main
from scaling_study.config import load_job
from scaling_study.service.local_ray import processes, terminate
from scaling_study.storage import Loc, read_csv
from scaling_study.tune import submit as sub

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]  # a hung job fails the test; teardown still runs

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MARKER = "SCALING_STUDY_TEST_CLUSTER"
TOKEN_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
TINY = ["scaling.num_workers=1", "train.global_batch=16", "train.steps=4", "eval.every_steps=2",
        "data.synth.train=200", "data.synth.dev=20", "data.max_eval_examples=20"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill(marker: str, grace_s: float = 5.0) -> list[int]:
    """SIGTERM the cluster's processes (those whose environment carries the marker), SIGKILL what
    is left after `grace_s`; return survivors."""
    return terminate(lambda: processes(marker, MARKER), grace_s)


@pytest.fixture(scope="module")
def head(s3):
    """A 2-CPU head node on loopback with the dashboard (Job Submission API) and Ray's token
    authentication on, with this machine's default token (~/.ray/auth_token, made if missing, the
    token Ray gives every local cluster here): its GCS address and dashboard URL. Its nodes hold
    the S3 server's endpoint and keys (`s3`), as a cluster writing to a bucket would."""
    marker = uuid.uuid4().hex
    temp = tempfile.mkdtemp(prefix="ssray")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", *TOKEN_ENV)}
    # `python` in the job's entrypoint must be this environment's.
    env.update({MARKER: marker, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "RAY_AUTH_MODE": "token"})
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True, timeout=60,
                   check=True)
    dashboard, gcs = _free_port(), _free_port()
    # Every port chosen here: a fixed default (the job agent's 52365) may be held by another Ray
    # on this machine, and then the Job Submission API answers "No available agent".
    cmd = [str(BIN / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
           "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--include-dashboard", "true",
           "--dashboard-agent-listen-port", str(_free_port()), "--num-cpus", "2", "--disable-usage-stats",
           "--temp-dir", temp]
    try:
        started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield SimpleNamespace(dashboard=f"http://127.0.0.1:{dashboard}", gcs=f"127.0.0.1:{gcs}")
    finally:
        survivors = _kill(marker)
        shutil.rmtree(temp, ignore_errors=True)
        assert not survivors, f"cluster processes still running: {survivors}"


@pytest.fixture(scope="module")
def cluster(head):
    """The head's Job Submission API address."""
    return head.dashboard


def _cli(args, env_update=None, *, cwd, timeout):
    """`scaling-study ARGS` in a subprocess (its own Ray client state), with this test's environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", *TOKEN_ENV)}
    env.update(env_update or {})
    return subprocess.run([sys.executable, "-m", "scaling_study.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_a_sweep_runs_against_a_token_authenticated_head_with_the_token_found_as_ray_finds_it(head, tmp_path):
    """Neither RAY_AUTH_MODE nor a token variable set: the token comes from ~/.ray/auth_token, as
    for `ray status --address`."""
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "name": "token_sweep", "base": str(ROOT / "jobs" / "sweep_base_tiny.yaml"),
        "output": {"dir": str(tmp_path / "sweeps")}, "search": {"algorithm": "grid"},
        "parameters": {"optimizer.lr": {"distribution": "grid", "values": [0.004]}}}))
    overrides = sum((["--set", f"set.{item}"] for item in TINY), [])
    done = _cli(["sweep", str(space), "--address", head.gcs, *overrides], cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    trials = pd.read_csv(tmp_path / "sweeps" / "token_sweep" / "trials.csv")
    assert list(trials["status"]) == ["DONE"]


def test_without_the_cluster_token_the_error_names_where_to_give_it(head, tmp_path):
    home = tmp_path / "home"  # no ~/.ray/auth_token there, and no token variable
    home.mkdir()
    # Ray's driver retries a refused GCS connection once a second, 20 times by default (for a GCS
    # still starting); one try is enough to see what we say after.
    done = _cli(["run", str(ROOT / "jobs" / "sweep_base_tiny.yaml"), "--address", head.gcs, *sum((["--set", t] for t in TINY), [])],
                {"HOME": str(home), "RAY_gcs_server_port_wait_time_s": "1"}, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"--address {head.gcs}: the Ray cluster there refused the connection" in done.stderr
    assert "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token" in done.stderr
    assert "cannot reach" not in done.stderr


def _wait_status(client, job_id: str, wanted: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while (status := str(client.get_job_status(job_id).value)) != wanted and time.monotonic() < deadline:
        if status in sub.TERMINAL:
            break
        time.sleep(1.0)
    return status


def test_stop_moves_a_running_job_to_stopped(cluster, tmp_path, capsys):
    job_id = sub.submit(ROOT / "jobs" / "sweep_base_tiny.yaml", cluster, storage=str(tmp_path),
                        overrides=[*TINY, "name=submit_long", "train.steps=100000"])
    client = sub.connect(cluster)
    assert _wait_status(client, job_id, "RUNNING", 60) == "RUNNING", client.get_job_logs(job_id)
    assert main(["jobs", "stop", job_id, "--address", cluster]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{job_id}: STOPPED")
    assert str(client.get_job_status(job_id).value) == "STOPPED"


def test_a_submitted_run_succeeds_streams_its_log_and_writes_its_results_to_an_object_store(
        cluster, s3, capsys, tmp_path):
    """The cluster's storage is a bucket (as on a real cluster, where a local folder is not shared):
    records, the job, its parquet and Ray Train's checkpoints land there; `jobs` reads the job
    back; a report and an export read the run from its URI."""
    storage = f"{s3}/cluster"
    streamed = []  # wait=True follows the job's log stream until it ends, and fails unless it succeeded
    job_id = sub.submit(ROOT / "jobs" / "sweep_base_tiny.yaml", cluster, storage=storage,
                        overrides=[*TINY, "name=submit_smoke"], wait=True, out=streamed.append)
    assert job_id.startswith("scaling-study-run-submit_smoke-")
    assert "run 'submit_smoke' finished: 2 evaluations" in "\n".join(streamed)
    capsys.readouterr()

    assert main(["jobs", "status", job_id, "--address", cluster]) == 0
    assert capsys.readouterr().out.startswith(f"{job_id}: SUCCEEDED")
    assert main(["jobs", "logs", job_id, "--address", cluster]) == 0
    logs = capsys.readouterr().out
    assert "run 'submit_smoke' finished: 2 evaluations" in logs, logs[-4000:]
    assert main(["jobs", "list", "--address", cluster]) == 0
    assert job_id in capsys.readouterr().out

    run = Loc(storage) / "submit_smoke"
    records = read_csv(run / "records.csv")
    assert list(records["step"]) == [2, 4] and set(records["num_workers"]) == {1}
    assert (run / "records.parquet").is_file() and (run / "job.yaml").is_file()
    assert any((d / "position.json").is_file() for d in run.subdirs() if d.name.startswith("checkpoint_"))

    job = load_job(run / "job.yaml")
    assert job.output.dir == storage and job.name == "submit_smoke"
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "dashboard.html").is_file()
    assert main(["export", str(run), "--metric", "f1", "--out", str(tmp_path / "best.yaml")]) == 0
    best = load_job(tmp_path / "best.yaml")
    assert best.optimizer == job.optimizer and best.output.dir == job.output.dir  # a run keeps its output folder
    assert f"From {run}/job.yaml" in (tmp_path / "best.yaml").read_text()


def test_jobs_name_a_missing_job(cluster, capsys):
    assert main(["jobs", "status", "no-such-job", "--address", cluster]) == 2
    assert "no job 'no-such-job' at" in capsys.readouterr().err
