"""One trial through the service's API, in process: its detail, job, checkpoint (a zip) and log,
and ids that are not a trial's (escaping, unknown, malformed) answer 404, never 500."""
import io
import zipfile

import pytest
import yaml
from fastapi.testclient import TestClient

from scaling_study.service.app import create_app


@pytest.fixture
def client(live_root):
    trial = live_root / "live" / "trials" / "t0"
    (trial / "checkpoint_2026-01-01_00-00-00.000001" / "inner").mkdir(parents=True)
    (trial / "checkpoint_2026-01-01_00-00-00.000001" / "inner" / "model.bin").write_bytes(b"weights")
    (trial / "checkpoint_2026-01-02_00-00-00.000001").mkdir()
    (trial / "checkpoint_2026-01-02_00-00-00.000001" / "state.json").write_text("{}")
    tune_dir = live_root / "live" / "trial_driver_t0_0_lr=0.001_2026-01-01"
    tune_dir.mkdir()
    (tune_dir / "error.txt").write_text("Traceback ...\nValueError: the loss is NaN at step 7\n")
    return TestClient(create_app([str(live_root)]), base_url="http://127.0.0.1:8300")


def test_a_trial_with_its_evaluations_job_and_checkpoints(client):
    d = client.get("/api/studies/0:live/trials/t0").json()
    assert d["trial_id"] == "t0" and d["state"] == "stopped" and len(d["evaluations"]) == 3
    assert d["params"]["optimizer.name"] == "lamb" and d["metric_name"] == "f1"
    assert [c["name"] for c in d["checkpoints"]] == ["checkpoint_2026-01-01_00-00-00.000001",
                                                     "checkpoint_2026-01-02_00-00-00.000001"]
    assert yaml.safe_load(d["job"])["name"] == "t0"
    assert d["is_best"] == (client.get("/api/studies/0:live").json()["best"]["trial_id"] == "t0")
    job = client.get("/api/studies/0:live/trials/t0/job.yaml")
    assert job.status_code == 200 and 'filename="t0.yaml"' in job.headers["content-disposition"]


def test_a_checkpoint_downloads_as_a_zip_of_its_folder(client):
    newest = client.get("/api/studies/0:live/trials/t0/checkpoint.zip")
    assert newest.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(newest.content)).namelist() == ["checkpoint_2026-01-02_00-00-00.000001/state.json"]
    named = client.get("/api/studies/0:live/trials/t0/checkpoint.zip?name=checkpoint_2026-01-01_00-00-00.000001")
    z = zipfile.ZipFile(io.BytesIO(named.content))
    assert z.read("checkpoint_2026-01-01_00-00-00.000001/inner/model.bin") == b"weights"
    assert client.get("/api/studies/0:live/trials/t1/checkpoint.zip").status_code == 404  # keeps none


def test_a_trials_log_is_tunes_files_for_it(client):
    files = client.get("/api/studies/0:live/trials/t0/log").json()["files"]
    assert [f["name"] for f in files] == ["error.txt"] and "loss is NaN" in files[0]["text"]
    assert client.get("/api/studies/0:live/trials/t1/log").json() == {"files": []}


def test_the_run_of_a_run_folder_is_its_one_trial(client):
    d = client.get("/api/studies/0:solo/trials/solo").json()
    assert d["state"] == "finished" and len(d["evaluations"]) == 3 and yaml.safe_load(d["job"])["name"] == "solo"


@pytest.mark.parametrize("url", [
    "/api/studies/0:live/trials/nope", "/api/studies/0:live/trials/%2E%2E", "/api/studies/0:live/trials/t0%2F..%2F..",
    "/api/studies/0:live/trials/t0/checkpoint.zip?name=..", "/api/studies/0:live/trials/t0/checkpoint.zip?name=%2Fetc",
    "/api/studies/0:live/trials/t0/checkpoint.zip?name=params.json", "/api/studies/0:live/trials/" + "x" * 300,
    "/api/studies/0:nope/trials/t0", "/studies/0:live/trials/nope", "/studies/0:live/trials/%00",
    "/api/studies/0:live/trials/t0%00/log",
])
def test_anything_but_a_known_trial_is_404(client, url):
    assert client.get(url).status_code == 404, url


def test_the_trial_page_is_served(client):
    page = client.get("/studies/0:live/trials/t1")
    assert page.status_code == 200 and 'data-page="trial"' in page.text and "&larr; live" in page.text


def test_a_trials_own_progress_log_comes_first_and_a_runs_too(client, live_root):
    (live_root / "live" / "trials" / "t0" / "train.log").write_text("[scaling_study] step 10/40 phase 1 | loss 2.1\n")
    (live_root / "solo" / "train.log").write_text("[scaling_study] step 5/10 phase 1 | loss 3.0\n")
    files = client.get("/api/studies/0:live/trials/t0/log").json()["files"]
    assert [f["name"] for f in files] == ["train.log", "error.txt"] and "step 10/40" in files[0]["text"]
    solo = client.get("/api/studies/0:solo/trials/solo/log").json()["files"]
    assert [f["name"] for f in solo] == ["train.log"]


def test_rank_zero_keeps_its_progress_lines_in_the_runs_own_log(tmp_path, capsys):
    from scaling_study.train import loop

    loop.log_to(str(tmp_path / "run"))
    try:
        loop.say("step 10/40 phase 1 | loss 2.1000")
    finally:
        loop.log_to(None)
    loop.say("not kept")
    lines = (tmp_path / "run" / "train.log").read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith("[scaling_study] step 10/40 phase 1 | loss 2.1000")
