"""Who may use the service: loopback names only by default, a token beyond loopback (the service
refuses to start without one), an object-store root served like a local one; and, tried as an
attacker would: nothing read outside the roots and the project (bases, exports, links out), user
YAML without aliases, uploads that never stay, one id per study, no 500 for odd names or text,
same-site redirects and the security headers on every answer."""
import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from fixtures.service import write_live_sweep, write_run
from scaling_study.cli import main
from scaling_study.errors import UserError
from scaling_study.service import launch
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


# --- what the service reads: the roots, and the project's jobs and spaces -----------------------

CSRF = {"X-Scaling-Study": "1"}


class NoRay(launch.Launcher):
    """A launcher for tests that must never reach (or start) Ray."""

    def job_address(self) -> str:
        raise UserError("the cluster refused the job (no Ray in these tests)")


@pytest.fixture
def client(root):
    return TestClient(create_app([str(root)], launcher=NoRay()), base_url="http://127.0.0.1:8300")


def _space(base: str) -> str:
    return (launch.SPACES_DIR / "weak_scaling_small.yaml").read_text().replace(
        "base: ../jobs/", f"base: {base}  # was ../jobs/")


def _dry_run(client, **body) -> dict:
    reply = client.post("/api/submit", json={**body, "dry_run": True}, headers=CSRF)
    assert reply.status_code == 200
    return reply.json()


def test_a_base_outside_the_project_is_refused_unread_in_a_check(client, tmp_path):
    secret = tmp_path / "secret.yaml"
    secret.write_text("name: leaked-value\n")
    answers = [_dry_run(client, yaml=_space(str(secret)), filename="a.yaml"),
               _dry_run(client, yaml=_space(str(tmp_path / "missing.yaml")), filename="a.yaml"),
               _dry_run(client, yaml=_space("../../../../../../" + str(secret)), filename="a.yaml"),
               _dry_run(client, space="weak_scaling_small.yaml", overrides=[f"base={secret}"])]
    for answer in answers:
        [error] = answer["errors"]
        assert error["key"] == "base" and "not a job file of this project" in error["message"]
        assert "leaked-value" not in json.dumps(answer) and "no job file at" not in error["message"]
    assert answers[0]["errors"][0]["message"] == answers[1]["errors"][0]["message"].replace("missing", "secret")


def test_a_base_that_links_out_of_the_project_is_refused(client, tmp_path, monkeypatch):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "linked.yaml").symlink_to(launch.SPACES_DIR.parent / "jobs" / "sweep_base_tiny.yaml")
    monkeypatch.setattr(launch, "BASE_FOLDERS", (jobs,))
    [error] = _dry_run(client, yaml=_space(str(jobs / "linked.yaml")), filename="a.yaml")["errors"]
    assert error["key"] == "base" and "must be under jobs/" in error["message"]


# --- YAML from users ---------------------------------------------------------------------------

def test_yaml_aliases_are_refused_and_echoed_values_cut_short(client):
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 7):  # each level nine of the one before: 9**7 values from a few hundred bytes
        levels.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    bomb = "\n".join(levels) + "\nname: b\n"
    reply = client.post("/api/submit", json={"yaml": bomb, "filename": "bomb.yaml"}, headers=CSRF)
    assert reply.status_code == 422 and len(reply.content) < 1000
    assert "aliases" in reply.json()["errors"][0]["message"]
    assert _dry_run(client, space="weak_scaling_small.yaml", overrides=["set.train.steps=&a 3"])["ok"]  # no alias
    aliased = client.post("/api/submit", json={"space": "weak_scaling_small.yaml",
                                               "overrides": ["set.train.tags=[&a [1], *a]"]}, headers=CSRF)
    assert aliased.status_code == 422 and "aliases" in aliased.json()["errors"][0]["message"]
    long = client.post("/api/submit", json={"yaml": _space("../jobs/sweep_base_tiny.yaml") + f"\nsurprise: {'x' * 60_000}\n",
                                            "filename": "long.yaml"}, headers=CSRF)
    assert long.status_code == 422 and len(long.content) < 2000
    deep = client.post("/api/submit", json={"yaml": "a: " + "[" * 500 + "]" * 500, "filename": "deep.yaml"}, headers=CSRF)
    assert deep.status_code == 422 and "deep" in deep.json()["errors"][0]["message"]


# --- uploads -----------------------------------------------------------------------------------

def test_an_upload_is_never_written_into_the_checkout_even_when_the_check_breaks(client, monkeypatch):
    from scaling_study.tune import space

    seen = []
    real = space.load_space

    def broken(path, overrides=(), **kwargs):
        seen.append(path.exists())  # the upload was not written for the check
        raise TypeError("a loader bug")

    monkeypatch.setattr(space, "load_space", broken)
    before = set(launch.SPACES_DIR.iterdir())
    reply = client.post("/api/submit", json={"yaml": _space("../jobs/sweep_base_tiny.yaml"), "filename": "new-one.yaml"},
                        headers=CSRF)
    assert reply.status_code == 422 and "TypeError" in reply.json()["errors"][0]["message"]
    assert seen == [False] and set(launch.SPACES_DIR.iterdir()) == before
    monkeypatch.setattr(space, "load_space", real)


def test_an_upload_is_shipped_from_a_temporary_copy_removed_afterwards(client, monkeypatch):
    shipped = []

    def fake_submit(path, address, *, overrides, storage, out, root):
        shipped.append((root, path.read_text(), (root / "jobs").is_dir()))
        raise UserError("the cluster refused the job")

    monkeypatch.setattr(launch.ray_jobs, "submit", fake_submit)
    monkeypatch.setattr(NoRay, "job_address", lambda self: "http://127.0.0.1:9")
    text = _space("../jobs/sweep_base_tiny.yaml").replace("name: weak_scaling_small", "name: shipped")
    reply = client.post("/api/submit", json={"yaml": text, "filename": "ship.yaml"}, headers=CSRF)
    assert reply.status_code == 400 and "refused" in reply.json()["error"]
    [(project, sent, has_jobs)] = shipped
    assert sent == text and has_jobs and not project.exists()  # removed although the submission failed
    assert launch.SPACES_DIR.parent not in project.parents and not (launch.SPACES_DIR / "ship.yaml").exists()


# --- exports read only inside the root -----------------------------------------------------------

@pytest.mark.parametrize("linked", ["job.yaml", "records.csv"])
def test_an_export_refuses_files_that_link_out_of_the_root(client, root, tmp_path, linked):
    outside = tmp_path.parent / f"outside-{linked}"
    write_run(root / "solo")
    (root / "solo" / linked).rename(outside)
    (root / "solo" / linked).symlink_to(outside)
    reply = client.get("/api/studies/0:solo/best.yaml")
    assert reply.status_code == 404 and "not inside the results root" in reply.json()["error"]
    trial_job = root / "live" / "trials" / "t0" / "job.yaml"
    trial_job.rename(tmp_path.parent / "outside-trial.yaml")
    trial_job.symlink_to(tmp_path.parent / "outside-trial.yaml")
    assert client.get("/api/studies/0:live/best.yaml").status_code == 404


def test_an_export_refuses_trial_ids_that_leave_the_sweep(client, root):
    import pandas as pd

    sweep = root / "live"
    frames = [pd.read_csv(p) for p in sorted((sweep / "trials").glob("*/records.csv"))]
    gathered = pd.concat(frames).assign(trial_id="../../../elsewhere")
    gathered.to_csv(sweep / "records.csv", index=False)
    (sweep / "trials.csv").write_text("trial_id,status\nt0,DONE\n")
    assert client.get("/api/studies/0:live/best.yaml").status_code == 404


# --- one id per study, and no 500 for odd names ---------------------------------------------------

@pytest.mark.parametrize("index", ["00", "+0", " 0", "0 ", "\u0660", "\u00b2", "0x0", "-0", "1" * 400])
def test_a_study_has_one_id(client, index):
    assert client.get("/api/studies/0:live").status_code == 200
    reply = client.get(f"/api/studies/{quote(index)}:live")
    assert reply.status_code == 404, (index, reply.text)


def test_downloads_of_any_study_name_carry_an_rfc5987_file_name(client, root):
    write_run(root / 'études "β" 研究')
    sid = quote('0:études "β" 研究')
    for url in (f"/api/studies/{sid}/tables/records.csv", f"/api/studies/{sid}/dashboard.html?download=1"):
        reply = client.get(url)
        assert reply.status_code == 200, url
        disposition = reply.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="') and disposition.count('"') == 2
        assert "filename*=UTF-8''%C3%A9tudes%20%22%CE%B2%22%20%E7%A0%94%E7%A9%B6" in disposition


def test_a_lone_surrogate_in_a_json_body_is_refused_not_a_crash(client):
    for body in (b'{"space": "\\ud800.yaml"}', b'{"yaml": "name: \\udfff", "filename": "x.yaml"}',
                 b'{"space": "weak_scaling_small.yaml", "overrides": ["name=\\ud83d"]}', b"[" * 100_000):
        reply = client.post("/api/submit", content=body, headers={**CSRF, "Content-Type": "application/json"})
        assert reply.status_code == 422, body[:40]


# --- redirects, headers, docs --------------------------------------------------------------------

@pytest.mark.parametrize("path, location", [("//other.site/x", "/other.site/x"), ("/\\other.site/x", "/other.site/x"),
                                            ("/studies/0:é", "/studies/0:%C3%A9")])
def test_the_token_trade_redirects_only_within_the_service(root, path, location):
    client = TestClient(create_app([str(root)], host="0.0.0.0", token=TOKEN), base_url="http://10.1.2.3:8300")
    reply = client.get(f"http://10.1.2.3:8300{path}?token={TOKEN}", follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == location


def test_every_answer_carries_the_security_headers(root):
    client = TestClient(create_app([str(root)], host="0.0.0.0", token=TOKEN), base_url="http://10.1.2.3:8300")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = {"page": client.get("/", headers=auth), "api": client.get("/api/studies", headers=auth),
               "missing": client.get("/api/studies/0:nope", headers=auth), "refused": client.get("/api/studies"),
               "asset": client.get("/static/app.js", headers=auth)}
    for what, reply in answers.items():
        csp = reply.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, what
        assert reply.headers["x-frame-options"] == "DENY" and reply.headers["x-content-type-options"] == "nosniff", what
        assert reply.headers["referrer-policy"] == "no-referrer", what
    assert all(answers[k].headers["cache-control"] == "no-store" for k in ("api", "missing", "refused"))
    dashboard = client.get("/api/studies/0:live/dashboard.html", headers=auth)
    assert dashboard.headers["content-security-policy"].startswith("sandbox allow-scripts")


def test_no_interactive_docs_from_a_cdn_but_the_schema_stays(client):
    assert client.get("/api/docs").status_code == 404
    schema = client.get("/api/openapi.json")
    assert schema.status_code == 200 and "/api/studies/{sid}" in schema.json()["paths"]


def test_yaml_in_a_results_root_is_read_without_aliases_too(client, root):
    write_run(root / "solo")
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"] + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 8)]
    (root / "solo" / "job.yaml").write_text("\n".join(levels) + "\nname: solo\n")
    reply = client.get("/api/studies/0:solo/best.yaml")
    assert reply.status_code == 400 and "aliases" in reply.json()["error"] and len(reply.content) < 1_000


def test_a_study_folder_that_links_out_of_the_root_shows_nothing_from_there(client, root, tmp_path):
    elsewhere = tmp_path.parent / "elsewhere-trials"
    write_live_sweep(tmp_path.parent / "elsewhere")
    (tmp_path.parent / "elsewhere" / "trials").rename(elsewhere)
    (root / "live" / "trials").rename(root / "live" / "kept")
    (root / "live" / "trials").symlink_to(elsewhere)
    study = client.get("/api/studies/0:live").json()
    assert study["evaluations"] == {} and all(t["n_evals"] == 0 for t in study["trials"])


def test_names_and_values_that_are_not_unicode_never_fail_an_answer(client, root):
    import os

    os.makedirs(os.fsencode(str(root)) + b"/odd\xff")
    write_run(os.fsdecode(os.fsencode(str(root)) + b"/odd\xff"))  # no id can name it: not listed
    params = root / "live" / "trials" / "t1" / "params.json"
    params.write_text('{"trial_id": "t1", "params": {"optimizer.name": "\\ud800", "scaling.num_workers": 2}}')
    listed = client.get("/api/studies")
    assert listed.status_code == 200 and {s["id"] for s in listed.json()["studies"]} == {"0:live"}
    for url in ("/api/studies/0:live", "/api/studies/0:live/tables/records.csv", "/api/studies/0:live/figures",
                "/studies/0:live", "/api/studies/0:live/dashboard.html"):
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("records", [b"step,f1\n1,\xff\xfe\n", b"step,f1\n1,2\n1,2,3,4\n"])
def test_a_study_whose_records_do_not_parse_answers_409(client, root, records):
    write_run(root / "bad")
    (root / "bad" / "records.csv").write_bytes(records)
    assert client.get("/api/studies").status_code == 200
    for url in ("/api/studies/0:bad", "/api/studies/0:bad/figures", "/api/studies/0:bad/best.yaml", "/studies/0:bad"):
        reply = client.get(url)
        assert reply.status_code == 409 and "does not parse" in reply.json()["error"], url
