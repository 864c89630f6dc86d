"""The service's JSON API in process (FastAPI's TestClient, no socket) over results written by the
test: listing, a study with its evaluations, reports, exports, steering, submission checks and the
submitted job's log stream (over a fake Ray client)."""
import asyncio
import json
from types import SimpleNamespace

import pytest
import yaml
from fastapi.testclient import TestClient

from fixtures.service import rows, write_records, write_run
from scaling_study.config import load_job
from scaling_study.service import events, launch
from scaling_study.service.app import create_app
from scaling_study.service.launch import Launcher
from scaling_study.tune import steer

CSRF = {"X-Scaling-Study": "1"}


class FakeLauncher(Launcher):
    """Records what would be submitted instead of reaching Ray."""

    def __init__(self):
        super().__init__("http://127.0.0.1:9")
        self.submitted = []

    def submit(self, checked, root):
        self.submitted.append((checked.name, checked.overrides, str(root.loc)))
        with launch.working_dir(checked) as (project, path):  # what Ray would ship
            self.shipped = (project, path, path.read_text())
        record = {"job_id": "job-1", "kind": "sweep", "space": checked.shown_as, "name": checked.name}
        (root.loc / checked.name / "submission.json").write_text(json.dumps(record))
        return record


@pytest.fixture
def launcher():
    return FakeLauncher()


@pytest.fixture
def client(live_root, launcher):
    return TestClient(create_app([str(live_root)], launcher=launcher), base_url="http://127.0.0.1:8300")


def test_the_studies_and_one_study_with_its_evaluations(client):
    listed = client.get("/api/studies").json()
    assert {s["id"] for s in listed["studies"]} == {"0:live", "0:solo"}
    study = client.get("/api/studies/0:live").json()
    assert study["status"] == "running" and len(study["trials"]) == 4  # 4 planned: one not made yet
    assert study["trials"][-1]["planned"] and study["trials"][-1]["state"] == "pending"
    assert {k: len(v) for k, v in study["evaluations"].items()} == {"t0": 3, "t1": 2, "t2": 1}
    row = study["evaluations"]["t1"][0]
    assert row["samples"] == 2000 and row["mlm_acc"] is None  # NaN travels as null
    assert "evaluations" not in client.get("/api/studies/0:live?evaluations=false").json()
    since = client.get(f"/api/studies/0:live?since={study['seq']}").json()
    assert since["evaluations"] == {}


def test_unknown_and_escaping_ids_are_404(client):
    for url in ("/api/studies/0:nope", "/api/studies/0:..%2F..%2Fetc", "/api/studies/7:live",
                "/api/studies/0:live%2F..%2F..%2Fx/best.yaml", "/studies/0:..%2Fx"):
        assert client.get(url).status_code == 404, url
    assert client.get("/api/studies/0:live/tables/..%2F..%2Fpasswd.csv").status_code == 404


def test_the_reports_figures_tables_and_dashboard(client):
    figures = client.get("/api/studies/0:live/figures").json()
    by_key = {s["key"]: s for s in figures["sections"]}
    assert by_key["curves"]["figure"]["data"][0]["type"] == "scatter"
    assert {t["name"] for t in by_key["curves"]["figure"]["data"]} == {"t0", "t1", "t2"}
    assert by_key["weak"]["figure"] is not None  # 1 and 2 workers at one per-worker batch
    records = client.get("/api/studies/0:live/tables/records.csv")
    assert records.headers["content-type"].startswith("text/csv") and records.text.count("\n") == 7
    assert "hp.optimizer.lr" in records.text.splitlines()[0]
    trials = client.get("/api/studies/0:live/tables/trials.csv").text
    assert "status" in trials.splitlines()[0] and "STOPPED" in trials
    assert client.get("/api/studies/0:live/tables/nope.csv").status_code == 404
    page = client.get("/api/studies/0:live/dashboard.html?download=1")
    assert page.status_code == 200 and "Plotly.newPlot" in page.text and "attachment" in page.headers["content-disposition"]


def test_best_yaml_of_a_running_sweep_validates_and_rescales(client, tmp_path):
    reply = client.get("/api/studies/0:live/best.yaml")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/yaml")
    (tmp_path / "best.yaml").write_text(reply.text)
    job = load_job(tmp_path / "best.yaml")
    assert job.name == "best_live" and job.optimizer.name == "lamb" and job.output.dir == "runs"
    assert "Best trial of" in reply.text and "t0" in reply.text.splitlines()[0]
    rescaled = yaml.safe_load(client.get("/api/studies/0:live/best.yaml?workers=4").text)
    assert rescaled["scaling"]["num_workers"] == 4 and rescaled["name"] == "best_live_4w"
    fastest = client.get("/api/studies/0:live/best.yaml?metric=time_to_target&target_metric=f1&target=40")
    assert fastest.status_code == 200 and "reached f1 ≥ 40" in fastest.text
    bad = client.get("/api/studies/0:live/best.yaml?metric=bleu")
    assert bad.status_code == 400 and "bleu" in bad.json()["error"]


def test_best_yaml_of_a_run_is_what_export_writes(client, tmp_path):
    reply = client.get("/api/studies/0:solo/best.yaml")
    assert reply.status_code == 200
    (tmp_path / "solo.yaml").write_text(reply.text)
    assert load_job(tmp_path / "solo.yaml").name == "best_solo"


def test_stopping_writes_a_request_the_sweep_reads(client, live_root):
    assert client.post("/api/studies/0:live/trials/t1/stop").status_code == 403  # no CSRF header
    reply = client.post("/api/studies/0:live/trials/t1/stop", headers=CSRF)
    assert reply.status_code == 202
    assert steer.pending_requests(live_root / "live") == (False, {"t1"})
    trial = {t["trial_id"]: t for t in client.get("/api/studies/0:live?evaluations=false").json()["trials"]}["t1"]
    assert trial["stop_requested"]
    assert client.post("/api/studies/0:live/trials/zz/stop", headers=CSRF).status_code == 404
    assert client.post("/api/studies/0:live/stop", headers=CSRF).status_code == 202
    assert steer.pending_requests(live_root / "live")[0]
    assert client.post("/api/studies/0:solo/stop", headers=CSRF).status_code == 409  # a run


def test_cross_site_posts_are_refused(client):
    for headers in ({**CSRF, "Origin": "http://evil.example"}, {**CSRF, "Sec-Fetch-Site": "cross-site"}):
        assert client.post("/api/studies/0:live/stop", headers=headers).status_code == 403
    assert client.post("/api/studies/0:live/stop", headers={**CSRF, "Origin": "http://127.0.0.1:8300"}).status_code == 202


# --- live streams --------------------------------------------------------------------------------

async def _events(stream, count):
    out = []
    async for chunk in stream:
        if chunk.startswith("event:"):
            lines = dict(line.split(": ", 1) for line in chunk.strip().split("\n"))
            out.append((lines["event"], lines["id"], json.loads(lines["data"])))
            if len(out) == count:
                break
    return out


def test_a_study_stream_pushes_new_evaluations_and_resumes(client, live_root, monkeypatch):
    monkeypatch.setattr(events, "TICK_S", 0.01)
    monkeypatch.setattr(events, "REFRESH_S", 0.0)
    index = client.app.state.index

    async def connected():
        return False

    async def scenario():
        stream = events.study_stream(index, "0:live", None, connected)
        [(kind, first_id, snap)] = await _events(stream, 1)
        assert kind == "snapshot" and len(snap["evaluations"]["t1"]) == 2
        write_records(live_root / "live" / "trials" / "t1", rows("t1", stop_at=6_000))
        [(kind, _, update)] = await _events(stream, 1)
        assert kind == "update" and [r["samples"] for r in update["evaluations"]["t1"]] == [6_000]
        await stream.aclose()
        resumed = events.study_stream(index, "0:live", first_id, connected)  # after a dropped connection
        [(kind, _, missed)] = await _events(resumed, 1)
        assert kind == "update" and [r["samples"] for r in missed["evaluations"]["t1"]] == [6_000]
        await resumed.aclose()
        stale = events.study_stream(index, "0:live", "otherstart.5", connected)
        [(kind, _, _)] = await _events(stale, 1)
        assert kind == "snapshot"
        await stale.aclose()

    asyncio.run(scenario())


def test_the_studies_stream_announces_a_new_study(client, live_root, monkeypatch):
    monkeypatch.setattr(events, "TICK_S", 0.01)
    monkeypatch.setattr(events, "SCAN_S", 0.0)
    index = client.app.state.index

    async def connected():
        return False

    async def scenario():
        stream = events.studies_stream(index, None, connected)
        [(kind, _, snap)] = await _events(stream, 1)
        assert kind == "snapshot" and len(snap["studies"]) == 2
        write_run(live_root / "another")
        [(kind, _, update)] = await _events(stream, 1)
        assert kind == "update" and [s["id"] for s in update["studies"]] == ["0:another"]
        await stream.aclose()

    asyncio.run(scenario())


class FakeJobClient:
    """Ray's JobSubmissionClient for one job whose log grows by `CHUNKS`: `tail_job_logs` yields
    each once, as Ray's does; the whole log (`get_job_logs`) is there to show what polling re-sends."""

    CHUNKS = ("starting sweep\n", "trial t1: f1 41.0\n", "trial t1: f1 55.5\nsweep finished\n")

    def __init__(self):
        self.tails, self.closed = 0, False

    async def tail_job_logs(self, job_id):
        self.tails += 1
        try:
            for chunk in self.CHUNKS:
                await asyncio.sleep(0)
                yield chunk
        finally:
            self.closed = True

    def get_job_logs(self, job_id):
        raise AssertionError("the stream fetched the whole log again")

    def get_job_info(self, job_id):
        return SimpleNamespace(status=SimpleNamespace(value="SUCCEEDED"), message="")


def _parsed(text: str) -> tuple[str, dict]:
    lines = dict(line.split(": ", 1) for line in text.strip().split("\n"))
    return lines["event"], json.loads(lines["data"])


def test_a_job_log_stream_sends_each_new_chunk_once_then_the_end(monkeypatch):
    fake, launcher = FakeJobClient(), FakeLauncher()
    monkeypatch.setattr(launcher, "client", lambda **_: fake)

    async def connected():
        return False

    async def scenario():
        return [_parsed(m) async for m in events.log_stream(launcher, "job-1", connected) if m.startswith("event:")]

    sent = asyncio.run(scenario())
    end = ("end", {"job_id": "job-1", "status": "SUCCEEDED", "message": ""})
    assert sent == [*(("log", {"text": chunk}) for chunk in FakeJobClient.CHUNKS), end]  # each chunk once, in order
    assert fake.tails == 1


def test_a_page_that_leaves_closes_the_job_log_stream(monkeypatch):
    fake, launcher = FakeJobClient(), FakeLauncher()
    monkeypatch.setattr(launcher, "client", lambda **_: fake)
    gone = iter([False, True])

    async def disconnected():
        return next(gone)

    async def scenario():
        sent = [m async for m in events.log_stream(launcher, "job-1", disconnected) if m.startswith("event:")]
        return sent, fake.closed  # before the event loop's shutdown would close what was left open

    sent, closed = asyncio.run(scenario())
    assert [_parsed(m) for m in sent] == [("log", {"text": FakeJobClient.CHUNKS[0]})]
    assert closed  # Ray's WebSocket is closed when the page goes, not when the job ends


def test_stream_routes_answer_with_event_streams(client):
    assert client.get("/api/studies/0:nope/events").status_code == 404


# --- pages ---------------------------------------------------------------------------------------

def test_pages_render_and_escape_what_they_show(client, live_root):
    write_run(live_root / "<b>odd</b>")
    assert "text/html" in client.get("/").headers["content-type"]
    page = client.get("/studies/0:%3Cb%3Eodd%3C%2Fb%3E").text
    assert "<b>odd</b>" not in page and "&lt;b&gt;odd&lt;/b&gt;" in page
    assert "<\\/b>" in page  # in the boot JSON, no "</" can close the script
    assert "/static/plotly.min.js" in page
    assert client.get("/submit").status_code == 200
    assert client.get("/compare?ids=0:live,0:solo").status_code == 200
    assert client.get("/api/compare/figures?ids=0:live,0:solo").json()["sections"]
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/..%2Fapp.py").status_code == 404


# --- submission ----------------------------------------------------------------------------------

def _no_uploads_left():
    return not list(launch.SPACES_DIR.glob(".upload-*"))


def test_a_shipped_space_is_checked_then_submitted(client, launcher, live_root):
    spaces = {s["name"]: s for s in client.get("/api/spaces").json()["spaces"]}
    assert "weak_scaling_small.yaml" in spaces and "weak_scaling" in spaces["weak_scaling_small.yaml"]["description"]
    body = {"space": "weak_scaling_small.yaml", "overrides": ["set.train.steps=20", "name=ws"]}
    checked = client.post("/api/submit", json={**body, "dry_run": True}, headers=CSRF)
    assert checked.status_code == 200 and checked.json()["ok"] and checked.json()["name"] == "ws"
    assert launcher.submitted == []
    reply = client.post("/api/submit", json=body, headers=CSRF)
    assert reply.status_code == 201 and reply.json()["study"] == "0:ws"
    assert launcher.submitted == [("ws", ("set.train.steps=20", "name=ws"), str(live_root))]
    study = {s["id"]: s for s in client.get("/api/studies").json()["studies"]}["0:ws"]
    assert study["status"] == "submitted"
    again = client.post("/api/submit", json=body, headers=CSRF)  # the folder exists now
    assert again.status_code == 201 or again.json()["errors"][0]["key"] == "name"


def test_submission_errors_name_the_key_and_submit_nothing(client, launcher):
    cases = [
        ({"space": "nope.yaml"}, "space"),
        ({"space": "weak_scaling_small.yaml", "overrides": ["set.train.steps=-3"]}, "train.steps"),
        ({"space": "weak_scaling_small.yaml", "overrides": ["scheduler.metric=bleu"]}, "scheduler.metric"),
        ({"yaml": "- a\n- list\n", "filename": "x.yaml"}, "<top>"),
        ({"yaml": "name: [unclosed\n", "filename": "bad.yaml"}, None),
        ({"space": "weak_scaling_small.yaml", "overrides": ["oops"]}, "overrides"),
    ]
    for body, key in cases:
        reply = client.post("/api/submit", json=body, headers=CSRF)
        assert reply.status_code == 422, (body, reply.text)
        error = reply.json()["errors"][0]
        assert error["key"] is not None and key in error["key"] if key else error["key"] is None, error
        checked = client.post("/api/submit", json={**body, "dry_run": True}, headers=CSRF)
        assert checked.status_code == 200 and checked.json()["errors"] == [error]  # a check answers
    malformed = client.post("/api/submit", json={"yaml": "name: [unclosed\n", "filename": "bad.yaml"}, headers=CSRF)
    error = malformed.json()["errors"][0]
    assert error["source"] == "bad.yaml" and error["message"].startswith("line 2, column 1 not valid YAML")
    assert launcher.submitted == [] and _no_uploads_left()


def test_an_uploaded_space_is_checked_like_a_file_next_to_the_shipped_ones(client, launcher):
    text = (launch.SPACES_DIR / "weak_scaling_small.yaml").read_text().replace("name: weak_scaling_small", "name: up")
    ok = client.post("/api/submit", json={"yaml": text, "filename": "mine.yaml", "dry_run": True}, headers=CSRF)
    preview = {"trials": 4, "dimensions": {"scaling.num_workers": [1, 2], "train.seed": [0, 1]}, "scheduler": "fifo",
               "max_concurrent_trials": 1}
    assert ok.status_code == 200 and ok.json() == {"ok": True, "errors": [], "name": "up", "space": "mine.yaml",
                                                   "preview": preview}
    bad = client.post("/api/submit", json={"yaml": text + "\nsurprise: 1\n", "filename": "mine.yaml"}, headers=CSRF)
    error = bad.json()["errors"][0]
    assert bad.status_code == 422 and error["key"] == "surprise" and error["source"] == "mine.yaml"
    assert launcher.submitted == [] and _no_uploads_left()


def test_uploads_are_size_limited(client, launcher):
    big = "# " + "x" * launch.MAX_UPLOAD_BYTES + "\nname: big\n"
    reply = client.post("/api/submit", json={"yaml": big, "filename": "big.yaml"}, headers=CSRF)
    assert reply.status_code == 422 and "at most" in reply.json()["errors"][0]["message"]
    huge = client.post("/api/submit", content=b"{" + b" " * (3 * launch.MAX_UPLOAD_BYTES) + b"}",
                       headers={**CSRF, "Content-Type": "application/json"})
    assert huge.status_code == 422
    assert launcher.submitted == [] and _no_uploads_left()
    assert client.post("/api/submit", json={"space": "weak_scaling_small.yaml"}).status_code == 403  # no CSRF header


class FakeLocalRay:
    """A local Ray that `die()`s on demand; counts starts and stops."""
    started = 0

    def __init__(self):
        self.alive, self.stopped = True, False
        FakeLocalRay.started += 1
        self.url = f"http://127.0.0.1:{9000 + FakeLocalRay.started}"

    def start(self):
        return self

    def running(self):
        return self.alive

    def stop(self):
        self.alive, self.stopped = False, True
        return []


def test_the_service_outlives_its_local_ray_and_starts_a_fresh_one_for_the_next_submission(monkeypatch):
    from scaling_study.service import local_ray

    FakeLocalRay.started = 0
    monkeypatch.setattr(local_ray, "LocalRay", FakeLocalRay)
    launcher = Launcher(None)
    assert launcher.job({"job_id": "j"})["status"] == launch.RAY_STOPPED  # nothing started for a status
    assert FakeLocalRay.started == 0
    first = launcher.job_address()
    assert first == "http://127.0.0.1:9001" and not launcher.ray_stopped()
    launcher._local.alive = False  # the Ray dies under the service
    assert launcher.ray_stopped()
    status = launcher.job({"job_id": "j"})
    assert status["status"] == launch.RAY_STOPPED and status["message"].startswith("Ray stopped")
    assert launcher.job_address() == "http://127.0.0.1:9002"  # the next submission: a fresh Ray
    fresh = launcher._local
    launcher.close()
    assert fresh.stopped and launcher.job_address(start=False) is None


def test_the_app_stops_its_local_ray_when_it_shuts_down(live_root):
    closed = []

    class Closing(FakeLauncher):
        def close(self):
            closed.append(True)

    with TestClient(create_app([str(live_root)], launcher=Closing())):
        pass
    assert closed == [True]
