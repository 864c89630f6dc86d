"""The service's bounds: what one study's answers may hold in memory, how many points a trial's
curve sends, which parameters are accepted, what remote clients are shown, and how long a
connection may take to send a request's head."""
import socket
import threading
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fixtures.service import rows, write_live_sweep, write_records, write_run
from scaling_study.service import http, memo, study
from scaling_study.service.app import create_app
from scaling_study.service.decimate import decimate, thin_figure

TOKEN = "a-token-of-enough-length-0123"
CSRF = {"X-Scaling-Study": "1"}


@pytest.fixture
def root(tmp_path):
    write_live_sweep(tmp_path / "live")
    write_run(tmp_path / "solo")
    return tmp_path


@pytest.fixture
def client(root):
    return TestClient(create_app([str(root)]), base_url="http://127.0.0.1:8300")


def _long_run(folder, n: int) -> pd.DataFrame:
    """A run of `n` evaluations whose f1 has one spike and one dip in the middle."""
    base = rows("t0")
    frame = pd.concat([base] * (n // len(base) + 1), ignore_index=True).iloc[:n].copy()
    frame = frame.assign(run_id="long", step=np.arange(1, n + 1), samples=np.arange(1, n + 1) * 16,
                         train_time_s=np.arange(1, n + 1) * 0.5, f1=np.linspace(10, 80, n))
    frame.loc[n // 3, "f1"], frame.loc[2 * n // 3, "f1"] = 99.0, 1.0
    write_records(folder, frame)
    return frame


# --- answers held in memory ----------------------------------------------------------------------

def test_since_values_share_answers_and_the_cache_is_bounded_in_bytes(client, monkeypatch):
    budget = memo.MemoBudget(200_000)
    monkeypatch.setattr(study, "BUDGET", budget)
    seq = client.get("/api/studies/0:live").json()["seq"]
    answers = {client.get(f"/api/studies/0:live?since={since}").content for since in range(seq, seq + 50)}
    assert len(answers) == 1  # every `since` at or past the study's own is one answer
    for since in (-10**30, -1, 10**30):
        assert client.get(f"/api/studies/0:live?since={since}").status_code == 200
    held = client.app.state.index.get("0:live")._memo
    assert len([k for k in held if k[0] == "detail"]) <= 4  # None, -1, seq (and nothing per value asked)
    assert budget.total <= budget.limit


def test_the_budget_lets_the_least_recently_used_answers_go():
    budget = memo.MemoBudget(3_000)

    class Owner:
        def __init__(self):
            self._memo = {}

    a, b = Owner(), Owner()
    for owner, key in ((a, 1), (b, 1), (a, 2)):
        owner._memo[key] = "x" * 1_000
        budget.hold(owner, key, 1_000)
    budget.used(a, 1)
    b._memo[2] = "x" * 1_500
    budget.hold(b, 2, 1_500)
    assert set(a._memo) == {1} and set(b._memo) == {2} and budget.total == 2_500


# --- big studies ---------------------------------------------------------------------------------

def test_decimation_keeps_the_ends_every_peak_and_dip_and_the_order():
    frame = pd.DataFrame({"f1": np.linspace(0, 1, 10_000), "i": np.arange(10_000)})
    frame.loc[1234, "f1"], frame.loc[8765, "f1"] = 5.0, -5.0
    kept = decimate(frame, "f1", 200)
    assert len(kept) <= 200 and kept["i"].is_monotonic_increasing
    assert {0, 1234, 8765, 9999} <= set(kept["i"])
    assert decimate(frame.iloc[:150], "f1", 200) is not None and len(decimate(frame.iloc[:150], "f1", 200)) == 150
    empty = decimate(frame.assign(f1=np.nan), "f1", 200)
    assert 2 < len(empty) <= 200


def test_a_long_trial_sends_its_curve_decimated_and_its_csv_whole(root, monkeypatch):
    monkeypatch.setattr(study, "CURVE_POINTS", 300)
    frame = _long_run(root / "long", 5_000)
    client = TestClient(create_app([str(root)]), base_url="http://127.0.0.1:8300")
    detail = client.get("/api/studies/0:long").json()
    [curve] = detail["evaluations"].values()
    assert len(curve) <= 300 and [r["step"] for r in curve] == sorted(r["step"] for r in curve)
    assert {99.0, 1.0, 10.0, 80.0} <= {r["f1"] for r in curve}  # the ends, the spike and the dip
    assert detail["trials"][0]["n_evals"] == 5_000
    csv = client.get("/api/studies/0:long/tables/records.csv").text
    assert csv.count("\n") == len(frame) + 1
    since = client.get(f"/api/studies/0:long?since=-1").json()
    assert since["replaced"] == ["long"] and len(since["evaluations"]["long"]) <= 300


def test_a_study_detail_is_made_once_per_change_for_every_client(client, monkeypatch):
    made = []
    real = study.Study.detail
    monkeypatch.setattr(study.Study, "detail", lambda self, **kw: made.append(kw) or real(self, **kw))
    bodies = {client.get("/api/studies/0:live").content for _ in range(5)}
    assert len(bodies) == 1 and made == [{"since": None, "evaluations": True}]


# --- parameters ------------------------------------------------------------------------------------

@pytest.mark.parametrize("query", ["workers=100000000000000000000000000000000000000000", "workers=0", "workers=-2",
                                   "scaling=foo", "mode=sideways", "target=nan", "target=inf",
                                   "metric=" + "f" * 500])
def test_export_parameters_are_bounded(client, query):
    reply = client.get(f"/api/studies/0:live/best.yaml?{query}")
    assert reply.status_code in (400, 422) and len(reply.content) < 1_000, query
    assert client.get("/api/studies/0:live/best.yaml?workers=4&scaling=weak").status_code == 200


@pytest.mark.parametrize("value", [False, True, 0.0, "0", None, [0], -1, 5])
def test_a_submission_root_is_an_index(client, value):
    body = {"space": "weak_scaling_small.yaml", "dry_run": True, "root": value}
    if value is None:
        body.pop("root")
    answer = client.post("/api/submit", json=body, headers=CSRF).json()
    assert answer["ok"] == (value is None), answer
    if value is not None:
        assert answer["errors"][0]["key"] == "root"


def test_remote_clients_are_never_shown_server_paths(root):
    client = TestClient(create_app([str(root)], host="0.0.0.0", token=TOKEN), base_url="http://10.1.2.3:8300",
                        headers={"Authorization": f"Bearer {TOKEN}", **CSRF})
    answers = [client.get("/api/studies"), client.get("/api/studies/0:live"), client.get("/api/studies/0:nope"),
               client.get("/api/studies/0:live?evaluations=false"), client.post("/api/studies/0:live/stop"),
               client.post("/api/submit", json={"space": "weak_scaling_small.yaml", "dry_run": True,
                                                "overrides": ["set.train.steps=-3"]}),
               client.get("/submit"), client.get("/api/studies/0:live/figures"),
               client.get("/api/studies/0:live/dashboard.html"), client.get("/api/studies/0:live/best.yaml"),
               client.get("/api/studies/0:solo/best.yaml"), client.get("/api/studies/0:live/tables/trials.csv"),
               client.get("/api/studies/0:live/tables/time_to_target.csv"), client.get("/studies/0:live")]
    assert all(reply.status_code < 500 for reply in answers)
    assert client.get("/api/studies/0:live").json()["path"] == f"{root.name}/live"
    for reply in answers:
        assert str(root) not in reply.text and "/work/" not in reply.text, reply.text[:300]


# --- connections -------------------------------------------------------------------------------------

def test_a_connection_that_sends_its_head_too_slowly_is_closed(root, monkeypatch):
    import uvicorn

    monkeypatch.setattr(http, "HEAD_TIMEOUT_S", 0.3)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    server = uvicorn.Server(http.server_config(create_app([str(root)])))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"GET /api/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
            assert slow.recv(100) == b""  # closed by the server, not answered
        with socket.create_connection(("127.0.0.1", port), timeout=10) as fine:
            fine.sendall(b"GET /api/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert fine.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.mark.parametrize("last", ["EPOCH.\u00b2", "EPOCH.\u0663", "EPOCH." + "9" * 5000, "EPOCH.-1", "x.1", ""])
def test_an_odd_last_event_id_gets_a_snapshot(root, last):
    from scaling_study.service import events
    from scaling_study.service.index import Index
    from scaling_study.service.roots import parse_roots

    index = Index(parse_roots([str(root)]))
    assert events.resume_point(index, last.replace("EPOCH", index.epoch)) is None
    assert events.resume_point(index, f"{index.epoch}.3") == 3


def test_a_comparison_is_of_a_bounded_number_of_studies(client):
    from scaling_study.service.app import MAX_COMPARE

    many = ",".join(["0:live", "0:solo"] * 500)  # repeats count once
    assert client.get(f"/api/compare/figures?ids={many}").status_code == 200
    too_many = ",".join(f"0:s{i}" for i in range(MAX_COMPARE + 1))
    reply = client.get(f"/api/compare/figures?ids={too_many}")
    assert reply.status_code == 400 and f"at most {MAX_COMPARE}" in reply.json()["error"]


def test_figures_and_dashboard_are_made_once_per_change_for_every_client(client, root, monkeypatch):
    from scaling_study.service import events, live

    monkeypatch.setattr(events, "REFRESH_S", 0.0)  # every request looks at the files
    made = []
    real_figures, real_dashboard = live.figures, live.dashboard
    monkeypatch.setattr(live, "figures", lambda *a: made.append("figures") or real_figures(*a))
    monkeypatch.setattr(live, "dashboard", lambda *a: made.append("dashboard") or real_dashboard(*a))
    for _ in range(3):
        assert client.get("/api/studies/0:live/figures").status_code == 200
        assert client.get("/api/studies/0:live/dashboard.html").status_code == 200
    assert sorted(made) == ["dashboard", "figures"]
    write_records(root / "live" / "trials" / "t1", rows("t1", stop_at=6_000))  # a change: made again
    client.get("/api/studies/0:live/figures")
    assert made.count("figures") == 2


def test_a_figure_trace_is_thinned_with_every_per_point_array(root, monkeypatch):
    figure = {"data": [{"x": list(range(5000)), "y": [float(i % 97) for i in range(5000)], "text": list(map(str, range(5000))),
                        "marker": {"color": list(range(5000)), "size": 4}, "name": "long"},
                       {"x": [1, 2], "y": [3, 4]}]}
    thin_figure(figure, 300)
    long, short = figure["data"]
    assert len(long["x"]) <= 300 and long["x"] == long["marker"]["color"] == list(map(int, long["text"]))
    assert max(long["y"]) == 96.0 and min(long["y"]) == 0.0 and long["x"][0] == 0 and long["x"][-1] == 4999
    assert short == {"x": [1, 2], "y": [3, 4]}
    monkeypatch.setattr(study, "CURVE_POINTS", 300)
    _long_run(root / "long", 5_000)
    client = TestClient(create_app([str(root)]), base_url="http://127.0.0.1:8300")
    curves = {s["key"]: s for s in client.get("/api/studies/0:long/figures").json()["sections"]}["curves"]
    assert all(len(trace["x"]) <= 1_000 for trace in curves["figure"]["data"])
