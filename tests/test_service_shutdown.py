"""`scaling-study serve` ends cleanly on SIGTERM: uvicorn's graceful shutdown (which ends the
process by the signal it received, as uvicorn does), with no traceback. (Its local Ray for
submissions runs in a session of its own and is stopped with it: tests/test_service_local_ray.py.)"""
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _serve(root: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_DISABLE_USAGE_STATS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "scaling_study.cli", "serve", str(root), "--port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()  # "scaling-study service: http://127.0.0.1:PORT/ ..."
    if "http://" not in line:
        proc.kill()
        raise AssertionError(f"the service did not start: {line}{proc.communicate()[0]}")
    return proc, line.split()[2].rstrip("/")


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
    try:
        assert json.load(urllib.request.urlopen(f"{url}/api/studies"))["studies"] == []
    finally:
        code, output = _stop(proc)  # stopped whatever happened: a test leaves no server behind
    assert code in (0, -signal.SIGTERM) and "Traceback" not in output, output
