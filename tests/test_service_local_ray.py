"""The service's local Ray is a `ray start --head` of its own: it can die without taking the
service with it, and `stop` ends every process it started."""
import os
import signal
import time

import pytest

from scaling_study.service.local_ray import LocalRay, processes

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


def gcs_pids(marker):
    pids = []
    for pid in processes(marker):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"gcs_server" in f.read():
                    pids.append(pid)
        except OSError:
            continue
    return pids


def test_the_local_ray_dies_alone_and_stops_clean():
    ray = LocalRay(cpus=1).start()
    try:
        assert ray.running() and ray.url.startswith("http://127.0.0.1:")
        assert gcs_pids(ray.marker), "no GCS among the local Ray's processes"
        # Its Job Submission API answers before `ray start` has finished starting the node; a GCS
        # killed in between leaves `ray start` in Ray's own 30 s wait for node info. Kill it once
        # `ray start --block` watches its processes, the service's case (a Ray that ran a while).
        deadline = time.monotonic() + 60
        while "will now block" not in ray.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.running() and "will now block" in ray.log.read_text(), \
            "`ray start` did not finish starting within 60 s:\n" + ray.log.read_text()[-2000:]
        for pid in gcs_pids(ray.marker):
            os.kill(pid, signal.SIGKILL)  # the Ray dies under the service; this process lives on
        deadline = time.monotonic() + 60
        while ray.running() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not ray.running(), "`ray start --block` did not notice its GCS die within 60 s"
    finally:
        left = ray.stop()
    assert left == [] and processes(ray.marker) == []
    assert not os.path.exists(ray.temp)
