"""Who may use the service: loopback names only by default, a token beyond loopback (the service
refuses to start without one), and an object-store root served like a local one."""
import pytest
from fastapi.testclient import TestClient

from fixtures.service import write_live_sweep, write_run
from scaling_study.cli import main
from scaling_study.errors import UserError
from scaling_study.service.app import create_app
from scaling_study.service.security import TOKEN_COOKIE, is_loopback

TOKEN = "a-token-of-enough-length-0123"


@pytest.fixture
def root(tmp_path):
    write_live_sweep(tmp_path / "live")
    return tmp_path


def test_loopback_names():
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2", "app.localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.2", "example.com", "::", ""]))


def test_another_host_name_on_loopback_is_refused(root):
    """A site whose name resolves to 127.0.0.1 (DNS rebinding) must not read the API."""
    client = TestClient(create_app([str(root)]), base_url="http://evil.example:8300")
    assert client.get("/api/studies").status_code == 403
    ok = TestClient(create_app([str(root)]), base_url="http://localhost:8300")
    assert ok.get("/api/studies").status_code == 200


def test_serving_beyond_loopback_needs_a_token(root, capsys):
    with pytest.raises(UserError, match="needs a token"):
        create_app([str(root)], host="0.0.0.0")
    with pytest.raises(UserError, match="16 characters"):
        create_app([str(root)], host="0.0.0.0", token="short")
    assert main(["serve", str(root), "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "needs a token" in capsys.readouterr().err


def test_every_request_carries_the_token(root):
    client = TestClient(create_app([str(root)], host="0.0.0.0", token=TOKEN), base_url="http://10.1.2.3:8300")
    assert client.get("/api/studies").status_code == 401
    assert client.get("/").status_code == 401
    assert client.get("/api/studies", headers={"Authorization": "Bearer wrong-token-xxxxxxxxxxxx"}).status_code == 401
    assert client.get("/api/studies", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/static/app.js", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_a_browser_trades_the_token_in_the_url_for_a_strict_cookie(root):
    client = TestClient(create_app([str(root)], host="0.0.0.0", token=TOKEN), base_url="http://10.1.2.3:8300")
    assert client.get("/?token=nope", follow_redirects=False).status_code == 401
    reply = client.get(f"/studies/0:live?token={TOKEN}&x=1", follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == "/studies/0:live?x=1"
    cookie = reply.headers["set-cookie"]
    assert f"{TOKEN_COOKIE}={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/studies/0:live").status_code == 200  # the client kept the cookie
    stop = client.post("/api/studies/0:live/stop", headers={"X-Scaling-Study": "1"})
    assert stop.status_code == 202


def test_an_object_store_root_serves_like_a_local_one(s3, tmp_path):
    base = f"{s3}/svc-api"
    write_live_sweep(f"{base}/live")
    write_run(f"{base}/solo")
    client = TestClient(create_app([base]), base_url="http://127.0.0.1:8300")
    assert {s["id"] for s in client.get("/api/studies").json()["studies"]} == {"0:live", "0:solo"}
    study = client.get("/api/studies/0:live").json()
    assert study["path"] == f"{base}/live" and len(study["evaluations"]["t0"]) == 3
    best = client.get("/api/studies/0:live/best.yaml")
    assert best.status_code == 200 and "name: best_live" in best.text
    assert client.get("/api/studies/0:solo/best.yaml").status_code == 200
    assert client.post("/api/studies/0:live/trials/t1/stop", headers={"X-Scaling-Study": "1"}).status_code == 202
    from scaling_study.tune import steer

    assert steer.pending_requests(f"{base}/live") == (False, {"t1"})
    assert client.get("/api/studies/0:live/figures").json()["sections"]


def test_an_unreachable_root_is_reported_not_fatal(s3, tmp_path):
    write_run(tmp_path / "solo")
    client = TestClient(create_app([f"{s3}-missing-bucket/x", str(tmp_path)]), base_url="http://127.0.0.1:8300")
    listed = client.get("/api/studies").json()
    assert [s["id"] for s in listed["studies"]] == ["1:solo"]
    assert listed["roots"][0]["error"] and listed["roots"][1]["error"] is None
