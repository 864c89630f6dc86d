"""`scaling-study serve` ends cleanly on SIGTERM, also after it started a local Ray for
submissions: uvicorn's graceful shutdown (which ends the process by the signal it received, as
uvicorn does), no native stack dump, and no process of that Ray left behind."""
import glob
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _serve(root: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_DISABLE_USAGE_STATS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "scaling_study.cli", "serve", str(root), "--port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()  # "scaling-study service: http://127.0.0.1:PORT/ ..."
    assert "http://" in line, line
    return proc, line.split()[2].rstrip("/")


def _session_processes(pid: int) -> list[str]:
    """Processes of the Ray session that process `pid` started (its folder ends with the pid)."""
    sessions = [os.path.basename(p) for p in glob.glob(f"/tmp/ray/session_*_{pid}")]
    if not sessions:
        return []
    out = subprocess.run(["pgrep", "-af", sessions[0]], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        output = proc.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        output = proc.communicate()[0]
    return proc.returncode, output


def test_sigterm_ends_the_service_cleanly(tmp_path):
    proc, url = _serve(tmp_path)
    assert json.load(urllib.request.urlopen(f"{url}/api/studies"))["studies"] == []
    code, output = _stop(proc)
    assert code in (0, -signal.SIGTERM) and "Traceback" not in output, output


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_sigterm_after_a_local_ray_started_leaves_no_ray_behind(tmp_path):
    study = tmp_path / "s1"
    study.mkdir()
    (study / "submission.json").write_text(json.dumps({"job_id": "none", "kind": "sweep", "space": "x.yaml"}))
    proc, url = _serve(tmp_path)
    try:
        urllib.request.urlopen(f"{url}/api/studies/0:s1/job", timeout=120)  # starts the local Ray; 404: no such job
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    assert _session_processes(proc.pid), "the local Ray did not start"
    code, output = _stop(proc)
    assert code in (0, -signal.SIGTERM) and "SIGTERM received" not in output and "Traceback" not in output, output
    assert _session_processes(proc.pid) == []
