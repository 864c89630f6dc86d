"""A sweep's life as the service shows it, in process: planned trials listed from submission,
a sweep a user stopped (states and counts as trials.csv has them), resuming it, and progress
measured against each trial's own budget."""
import json
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from fixtures.service import write_status

from scaling_study.errors import UserError
from scaling_study.service.app import create_app
from scaling_study.service.trial import job_budget
from scaling_study.tune import submit as ray_jobs

CSRF = {"X-Scaling-Study": "1"}
PLANNED = [{"scaling.num_workers": n, "train.seed": s} for n in (1, 2) for s in (0, 1)]


def _client(root) -> TestClient:
    return TestClient(create_app([str(root)]), base_url="http://127.0.0.1:8300")


def _submitted(folder, **extra) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submission.json").write_text(json.dumps(
        {"job_id": "job-1", "kind": "sweep", "space": "weak_scaling_small.yaml", "overrides": ["name=ws"],
         "name": folder.name, "planned": PLANNED, **extra}))


def test_a_just_submitted_sweep_lists_every_planned_trial_as_pending(tmp_path):
    _submitted(tmp_path / "ws")
    d = _client(tmp_path).get("/api/studies/0:ws").json()
    assert d["status"] == "submitted" and d["counts"] == {"pending": 4} and d["n_trials"] == 4
    assert [t["params"] for t in d["trials"]] == PLANNED
    assert {t["state"] for t in d["trials"]} == {"pending"} and all(t["planned"] for t in d["trials"])


def test_started_trials_take_their_planned_rows(live_root):
    _submitted(live_root / "live", planned=[{"optimizer.lr": v} for v in (1e-3, 1e-3, 2e-3, 5e-3)])
    trials = _client(live_root).get("/api/studies/0:live").json()["trials"]
    assert [t["trial_id"] for t in trials] == ["t0", "t1", "t2", "planned-1"]
    assert trials[-1]["params"] == {"optimizer.lr": 5e-3}  # t0, t1 and t2 took theirs


def _stopped_by_user(sweep) -> None:
    """The live sweep after a user stopped t1, then the sweep: Tune made t3 but never ran it."""
    (sweep / "trials" / "t1" / "stopped_by_user.json").write_text(json.dumps({"trial_id": "t1"}))
    write_status(sweep, state="interrupted", trials={"t0": {"state": "stopped"}, "t1": {"state": "running"},
                                                     "t2": {"state": "running"}})
    status = json.loads((sweep / "steer" / "status.json").read_text())
    (sweep / "steer" / "status.json").write_text(json.dumps({**status, "stopped_by_user": {"by": "user"}}))
    pd.DataFrame({"trial_id": ["t0", "t1", "t2", "t3"], "status": ["STOPPED"] * 4}).to_csv(
        sweep / "trials.csv", index=False)


def test_a_sweep_a_user_stopped_says_so_and_counts_as_trials_csv_does(live_root):
    _stopped_by_user(live_root / "live")
    d = _client(live_root).get("/api/studies/0:live").json()
    assert d["status"] == "stopped_by_user"
    states = {t["trial_id"]: t["state"] for t in d["trials"]}
    assert states == {"t0": "stopped", "t1": "stopped_by_user", "t2": "stopped_by_user", "t3": "stopped_by_user"}
    assert d["counts"] == {"stopped": 1, "stopped_by_user": 3}  # 4 STOPPED in trials.csv, one of them by ASHA
    listed = _client(live_root).get("/api/studies").json()["studies"]
    assert next(s for s in listed if s["id"] == "0:live")["status"] == "stopped_by_user"


def test_a_stopped_sweep_the_service_submitted_is_resumed(live_root, monkeypatch):
    sweep = live_root / "live"
    _stopped_by_user(sweep)
    client = _client(live_root)
    assert client.post("/api/studies/0:live/resume", headers=CSRF).status_code == 409  # not submitted here
    _submitted(sweep)
    assert "tune/tuner.pkl" in client.post("/api/studies/0:live/resume", headers=CSRF).json()["error"]
    (sweep / "tune").mkdir()
    (sweep / "tune" / "tuner.pkl").write_bytes(b"state")  # a sweep written before tune/ has it at its top
    calls = []
    monkeypatch.setattr(ray_jobs, "submit", lambda path, address, **kw: calls.append((path.name, kw)) or "job-2")
    monkeypatch.setattr(client.app.state.launcher, "job_address", lambda: "http://127.0.0.1:9")
    r = client.post("/api/studies/0:live/resume", headers=CSRF)
    assert r.status_code == 202 and r.json()["job_id"] == "job-2"
    (name, kw), = calls
    assert name == "weak_scaling_small.yaml" and kw["resume"] is True and kw["overrides"] == ["name=ws"]
    assert kw["storage"] == str(live_root)
    record = json.loads((sweep / "submission.json").read_text())
    assert record["job_id"] == "job-2" and record["previous_jobs"] == ["job-1"]


def test_a_running_sweep_or_a_run_is_not_resumed(live_root):
    client = _client(live_root)
    assert client.post("/api/studies/0:live/resume", headers=CSRF).status_code == 409
    assert client.post("/api/studies/0:solo/resume", headers=CSRF).status_code == 409
    assert client.post("/api/studies/0:nope/resume", headers=CSRF).status_code == 404


def test_progress_is_measured_against_each_trials_own_budget(live_root):
    sweep = live_root / "live"
    job = sweep / "trials" / "t0" / "job.yaml"  # 1 worker, 32 per step: 6,000 of 8,000 samples
    job.write_text(job.read_text().replace("steps: 250", "steps: 125"))  # its own budget: 4,000 samples
    write_status(sweep, trials={"t0": {"state": "finished"}, "t1": {"state": "running"}, "t2": {"state": "running"}})
    trials = {t["trial_id"]: t for t in _client(live_root).get("/api/studies/0:live").json()["trials"]}
    assert trials["t0"]["progress"] == 1.0 and trials["t0"]["budget"] == 6_000  # finished: full
    assert trials["t1"]["progress"] == pytest.approx(4_000 / 8_000) and trials["t1"]["budget"] == 8_000


@pytest.mark.parametrize("job, attr, batch, expected", [
    ({"train": {"steps": 10, "global_batch": 64}}, "samples", None, 640),
    ({"train": {"steps": 10, "global_batch": None}}, "samples", 32, 320),
    ({"train": {"phases": [{"steps": 10, "global_batch": 8}, {"steps": 5}], "global_batch": 4}}, "samples", None, 100),
    ({"train": {"steps": 10}}, "step", None, 10),
    ({"train": {"epochs": 2}}, "samples", 32, None),
    ({"train": {"steps": 10}}, "training_iteration", 32, None),
    ({}, "samples", 32, None),
])
def test_a_jobs_own_budget(job, attr, batch, expected):
    assert job_budget(job, attr, batch) == expected


def test_imported_records_are_a_finished_study_of_their_runs_with_nothing_to_steer(live_root):
    from fixtures.service import rows

    folder = live_root / "imported"
    folder.mkdir()
    frame = pd.concat([rows(t).assign(trial_id=t, **{"hp.optimizer.lr": lr}) for t, lr in (("t0", 1e-3), ("t2", 2e-3))])
    frame.to_csv(folder / "records.csv", index=False)  # a gathered sweep's records, nothing else
    client = _client(live_root)
    d = client.get("/api/studies/0:imported").json()
    assert (d["kind"], d["status"], d["imported"]) == ("run", "finished", True)
    assert {t["trial_id"]: (t["state"], t["params"], t["n_evals"]) for t in d["trials"]} == {
        "t0": ("finished", {"optimizer.lr": 1e-3}, 3), "t2": ("finished", {"optimizer.lr": 2e-3}, 1)}
    assert d["counts"] == {"finished": 2}
    assert client.post("/api/studies/0:imported/stop", headers=CSRF).status_code == 409
    assert client.get("/api/studies/0:solo").json()["imported"] is False  # a run of ours


def test_served_best_yaml_is_what_export_writes_for_a_moved_sweep(live_root, tmp_path):
    import yaml

    from scaling_study.config import OutputConfig
    from scaling_study.reports.export import export

    sweep = live_root / "live"
    for job in (sweep / "trials").glob("*/job.yaml"):  # written where the sweep ran before it was moved here
        data = yaml.safe_load(job.read_text())
        job.write_text(yaml.safe_dump({**data, "output": {**data["output"], "dir": "/elsewhere/live/trials"}}))
    served = yaml.safe_load(_client(live_root).get("/api/studies/0:live/best.yaml").text)
    export([str(sweep)], "f1", None, tmp_path / "best.yaml")
    assert served == yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert served["output"]["dir"] == OutputConfig().dir  # not the old sweep's trials folder


def _past_sweep(folder, space: str, trials: int, seconds: float) -> None:
    write_status(folder, state="finished")
    status = json.loads((folder / "steer" / "status.json").read_text())
    status["info"].update(space=f"/somewhere/search_spaces/{space}", trials_planned=trials)
    status.update(started_at=1000.0, heartbeat_at=1000.0 + seconds)
    (folder / "steer" / "status.json").write_text(json.dumps(status))


def test_a_submission_preview_estimates_time_from_past_sweeps_of_the_same_space(tmp_path):
    _past_sweep(tmp_path / "q1", "quickstart.yaml", trials=8, seconds=400.0)
    _past_sweep(tmp_path / "q2", "quickstart.yaml", trials=4, seconds=100.0)
    _past_sweep(tmp_path / "other", "weak_scaling.yaml", trials=2, seconds=9999.0)
    client = _client(tmp_path)
    client.get("/api/studies")  # the roots listed once
    e = client.get("/api/spaces/estimate?space=quickstart.yaml&trials=8").json()
    assert e["seconds"] == pytest.approx(8 * (50 + 25) / 2)  # the median of 50 and 25 s per trial
    assert {b["study"] for b in e["basis"]} == {"0:q1", "0:q2"}
    assert client.get("/api/spaces/estimate?space=never.yaml&trials=3").json() == {"seconds": None, "basis": []}
    for bad in ("space=../x&trials=3", "space=q.yaml&trials=0", "space=q.yaml&trials=x", "trials=3", "space=" + "a" * 200 + "&trials=1"):
        assert client.get(f"/api/spaces/estimate?{bad}").status_code == 422, bad
    checked = client.post("/api/submit", json={"space": "quickstart.yaml", "dry_run": True}, headers=CSRF).json()
    assert checked["ok"] and checked["preview"]["trials"] == 8


def test_override_keys_come_from_the_configuration_reference():
    from scaling_study.config import reference

    keys = {k["key"]: k for k in _client(Path("nowhere")).get("/api/override-keys").json()["keys"]}
    assert keys["set.train.steps"]["doc"].startswith("Optimizer steps") and "study.workers" in keys
    job_keys = {k.key for s in reference.sections(reference.Job) for k in s.keys} - {"name"}
    assert {f"set.{k}" for k in job_keys} <= set(keys)


def test_compared_settings_keep_what_differs(live_root):
    client = _client(live_root)
    d = client.get("/api/compare/settings?ids=0:live,0:solo").json()
    live, solo = (s["settings"] for s in d["studies"])
    assert live["optimizer.lr"] == "swept: 0.001, 0.002" and solo["optimizer.lr"] == "0.01"
    assert "optimizer.lr" in d["differing"] and "task" not in d["differing"] and live["task"] == solo["task"]
    assert "name" not in live and "output.dir" not in live
    assert client.get("/api/compare/settings?ids=0:live,0:nope").status_code == 404
    assert client.get("/api/compare/settings?ids=,").status_code == 404


def test_notes_and_tags_are_kept_in_the_study_folder_and_listed(live_root):
    client = _client(live_root)
    r = client.put("/api/studies/0:live/notes", json={"note": "LR too high for AdamW", "tags": ["baseline", "lr:1e-3"]},
                   headers=CSRF)
    assert r.status_code == 200
    assert client.put("/api/studies/0:live/trials/t1/notes", json={"note": "diverged", "tags": ["bad"]},
                      headers=CSRF).status_code == 200
    saved = json.loads((live_root / "live" / "notes.json").read_text())
    assert saved == {"study": {"note": "LR too high for AdamW", "tags": ["baseline", "lr:1e-3"]},
                     "trials": {"t1": {"note": "diverged", "tags": ["bad"]}}}
    listed = next(s for s in client.get("/api/studies").json()["studies"] if s["id"] == "0:live")
    assert listed["tags"] == ["baseline", "lr:1e-3"] and listed["note"] == "LR too high for AdamW"
    t1 = next(t for t in client.get("/api/studies/0:live").json()["trials"] if t["trial_id"] == "t1")
    assert (t1["note"], t1["tags"]) == ("diverged", ["bad"])


@pytest.mark.parametrize("url, body", [
    ("/api/studies/0:live/notes", {"note": "x" * 5000}),
    ("/api/studies/0:live/notes", {"tags": ["<script>"]}),
    ("/api/studies/0:live/notes", {"tags": ["a"] * 21}),
    ("/api/studies/0:live/notes", {"tags": "baseline"}),
    ("/api/studies/0:live/notes", {"note": 3}),
    ("/api/studies/0:live/notes", {"other": 1}),
    ("/api/studies/0:live/notes", ["list"]),
])
def test_bad_notes_are_refused_naming_the_key(live_root, url, body):
    r = _client(live_root).put(url, json=body, headers=CSRF)
    assert r.status_code == 400 and not (live_root / "live" / "notes.json").exists()


def test_notes_for_unknown_studies_or_trials_or_without_the_header_are_refused(live_root):
    client = _client(live_root)
    assert client.put("/api/studies/0:nope/notes", json={}, headers=CSRF).status_code == 404
    assert client.put("/api/studies/0:live/trials/nope/notes", json={}, headers=CSRF).status_code == 404
    assert client.put("/api/studies/0:live/trials/%2E%2E/notes", json={}, headers=CSRF).status_code == 404
    assert client.put("/api/studies/0:live/notes", json={"note": "x"}).status_code == 403
    big = client.put("/api/studies/0:live/notes", content=b"{" + b" " * 20000 + b"}", headers=CSRF)
    assert big.status_code == 400


def test_the_recommendation_panel_answers_for_n_gpus_an_interconnect_and_a_device(tmp_path):
    import shutil

    root = tmp_path / "r"
    for name in ("lamb", "adamw"):  # the committed critical-batch study's records, imported
        (root / name).mkdir(parents=True)
        shutil.copy(Path(__file__).resolve().parents[1] / "reports" / "critical_batch" / "records" / f"{name}.csv",
                    root / name / "records.csv")
    client = _client(root)
    d = client.get("/api/studies/0:lamb/recommendation?gpus=2&cluster=pcie4").json()
    assert d["devices"] == ["cpu"] and d["device"] == "cpu" and d["target"] == "f1 ≥ 40"
    assert d["row"]["num_workers"] == 2 and d["row"]["basis"] in ("measured", "projected", "none")
    assert "pcie4" in d["plan"]
    one = client.get("/api/studies/0:lamb/recommendation?gpus=1").json()["row"]
    assert one["basis"] == "measured" and one["optimizer"] == "lamb" and one["time_to_target_s"] > 0
    # CPU runs are projected onto GPU links only with a GPU's compute: a named device profile
    assert client.get("/api/studies/0:lamb/recommendation?gpus=64").json()["row"]["basis"] == "none"
    projected = client.get("/api/studies/0:lamb/recommendation?gpus=64&profile=h100-sxm-bf16").json()
    row = projected["row"]
    assert projected["profile"] == "h100-sxm-bf16" and "h100-sxm-bf16" in projected["profiles"]
    assert row["basis"] in ("projected", "extrapolated") and row["time_to_target_s"] > 0
    assert row["steps_lo"] <= row["steps_to_target"] <= row["steps_hi"]
    assert row["time_lo_s"] <= row["time_to_target_s"] <= row["time_hi_s"]
    for bad in ("gpus=0", "gpus=x", "gpus=100000", "cluster=warp9", "cluster=%3Cb%3E", "device=gpu", "device=" + "a" * 80,
                "profile=/etc/passwd", "profile=..%2F..%2Fjobs%2Fquickstart.yaml", "profile=" + "p" * 80):
        assert client.get(f"/api/studies/0:lamb/recommendation?{bad}").status_code in (400, 422), bad


H100_MEASURED = """device: NVIDIA H100 80GB HBM3
accelerator: cuda
date: 2026-12-06
source: scaling-study bench profile --model tiny --seq-len 64 --batch 16
models:
  - {model: tiny, task: squad, seq_len: 64, batch: 16, precision: bf16, samples_per_s: 40000.0, optimizer_step_s: 0.001}
"""


def test_the_panel_offers_the_operators_measured_profiles_by_name_never_a_path(tmp_path):
    import shutil

    root = tmp_path / "r"
    (root / "lamb").mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "reports" / "critical_batch" / "records" / "lamb.csv",
                root / "lamb" / "records.csv")
    (tmp_path / "h100-lab.yaml").write_text(H100_MEASURED)
    client = TestClient(create_app([str(root)], device_profiles=[str(tmp_path / "h100-lab.yaml"), "a100-sxm-bf16"]),
                        base_url="http://127.0.0.1:8300")
    d = client.get("/api/studies/0:lamb/recommendation?gpus=64&profile=h100-lab").json()
    assert "h100-lab" in d["profiles"] and "h100-sxm-bf16" in d["profiles"] and d["profile"] == "h100-lab"
    assert d["row"]["basis"] in ("projected", "extrapolated") and "NVIDIA H100 80GB HBM3" in d["plan"], d
    assert "h100-lab" in client.get("/studies/0:lamb").text  # the page's choice of profile
    for bad in ("h100-lab.yaml", str(tmp_path / "h100-lab.yaml"), "..%2Fh100-lab"):
        assert client.get(f"/api/studies/0:lamb/recommendation?gpus=64&profile={bad}").status_code in (400, 422), bad
    # Without the flag, the file is not offered.
    assert _client(root).get("/api/studies/0:lamb/recommendation?gpus=64&profile=h100-lab").status_code == 400


@pytest.mark.parametrize("name, text, says", [
    ("h100-sxm-bf16.yaml", H100_MEASURED, "another profile already is"),
    ("bad profile.yaml", H100_MEASURED, "not a plain name"),
    ("broken.yaml", "device: x\n", "missing key 'accelerator'"),
])
def test_a_device_profile_the_service_cannot_offer_fails_at_start_naming_the_file(tmp_path, name, text, says):
    (tmp_path / name).write_text(text)
    with pytest.raises(UserError, match=says) as err:
        create_app([str(tmp_path)], device_profiles=[str(tmp_path / name)])
    assert name in str(err.value)


def test_without_a_target_the_panel_says_why(live_root):
    from fixtures.service import rows

    (live_root / "plain").mkdir()
    rows("t0").assign(target_metric="", target_value=float("nan")).to_csv(live_root / "plain" / "records.csv", index=False)
    d = _client(live_root).get("/api/studies/0:plain/recommendation?gpus=64").json()
    assert d["row"] is None and "no recommendation" in d["why"]


def test_a_study_with_nothing_recorded_gets_no_recommendation_rather_than_an_error(tmp_path):
    _submitted(tmp_path / "ws")
    d = _client(tmp_path).get("/api/studies/0:ws/recommendation").json()
    assert d["row"] is None and "no recommendation yet" in d["why"]


def test_a_notes_file_edited_by_hand_into_nonsense_is_shown_as_no_notes(live_root):
    (live_root / "live" / "notes.json").write_text(json.dumps({"study": {"note": 5, "tags": "abc"}, "trials": []}))
    client = _client(live_root)
    listed = next(s for s in client.get("/api/studies").json()["studies"] if s["id"] == "0:live")
    assert (listed["note"], listed["tags"]) == ("5", [])
    assert all(t["tags"] == [] for t in client.get("/api/studies/0:live").json()["trials"])
