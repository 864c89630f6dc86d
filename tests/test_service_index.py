"""The study index: finding studies under roots, judging their state, reading only what changed,
and never resolving an id to anything outside the roots."""
import json
import os
import time

import pandas as pd
import pytest

from fixtures.service import rows, write_live_sweep, write_records, write_run, write_status, write_trial
from scaling_study.service import tail
from scaling_study.service.index import Index
from scaling_study.service.roots import NotFound, parse_roots, resolve
from scaling_study.storage import Loc
from scaling_study.tune import steer


@pytest.fixture
def root(tmp_path):
    top = tmp_path / "results"
    write_live_sweep(top / "live")
    write_run(top / "2026" / "solo")
    (top / "empty" / "nothing").mkdir(parents=True)
    write_run(top / ".hidden")
    return top


@pytest.fixture
def reads(monkeypatch):
    """Every byte range the cache reads, as (file name, start, end)."""
    seen = []
    real = tail.read_range

    def spy(loc, start, end):
        seen.append((loc.name, start, end))
        return real(loc, start, end)

    monkeypatch.setattr(tail, "read_range", spy)
    return seen


def test_studies_are_found_and_summarised(root):
    index = Index(parse_roots([str(root)]))
    studies = {s["id"]: s for s in index.studies()}
    assert set(studies) == {"0:live", "0:2026/solo"}  # hidden and empty folders are not studies
    live, solo = studies["0:live"], studies["0:2026/solo"]
    assert (live["kind"], live["status"], solo["kind"], solo["status"]) == ("sweep", "running", "run", "finished")
    assert live["counts"] == {"stopped": 1, "running": 2, "pending": 1} and live["n_trials"] == 4
    assert live["metric"] == {"name": "f1", "label": "F1 (%)", "mode": "max"}
    best = max(rows(t)["f1"].max() for t in ("t0", "t1", "t2"))
    assert live["best"]["value"] == pytest.approx(best) and live["best"]["trial_id"] == "t0"
    assert live["workers"] == [1, 2] and live["updated"] > time.time() - 60


def test_the_study_page_data_say_how_each_trial_stands(root):
    study = Index(parse_roots([str(root)])).get("0:live")
    trials = {t["trial_id"]: t for t in study.detail(evaluations=False)["trials"]}
    assert trials["t0"]["state"] == "stopped" and trials["t0"]["ended"] == "stopped by ASHA"
    assert trials["t1"]["progress"] == pytest.approx(4_000 / 8_000) and trials["t1"]["max_t"] == 8_000
    assert trials["t2"]["n_evals"] == 1 and trials["t2"]["state"] == "running"
    assert study.detail()["rungs"][0] == {"group": None, "bracket": 0, "milestone": 4000.0,
                                          "results": {"t0": 50.0, "t1": 40.0}}


def test_a_new_evaluation_is_read_from_where_the_file_ended(root, reads):
    index = Index(parse_roots([str(root)]))
    study = index.get("0:live")
    seq = study.seq
    size = (root / "live" / "trials" / "t1" / "records.csv").stat().st_size
    reads.clear()
    assert not study.refresh() and reads == []  # nothing changed: nothing read
    write_records(root / "live" / "trials" / "t1", rows("t1", stop_at=6_000))  # one more row, whole file replaced
    assert study.refresh() and study.seq == seq + 1
    assert [(name, start > 0 and start >= size - 64) for name, start, _ in reads] == [("records.csv", True)]
    new, replaced = study.trials["t1"].rows_since(seq)
    assert [r["samples"] for r in new] == [6_000] and not replaced
    assert len(study.trials["t1"].records) == 3


def test_a_rewritten_file_replaces_its_rows(root):
    study = Index(parse_roots([str(root)])).get("0:live")
    seq = study.seq
    write_records(root / "live" / "trials" / "t0", rows("t0", stop_at=2_000))  # a restart dropped rows
    assert study.refresh()
    new, replaced = study.trials["t0"].rows_since(seq)
    assert replaced and [r["samples"] for r in new] == [2_000]
    assert study.detail(since=seq)["replaced"] == ["t0"]


def test_states_from_the_status_file_markers_and_the_gathered_table(root):
    sweep = root / "live"
    index = Index(parse_roots([str(root)]))
    (sweep / "trials" / "t1" / steer.STOPPED_BY_USER).write_text("{}")
    write_status(sweep, trials={"t2": {"state": "error", "error": "ValueError: loss became nan"}})
    states = {t["trial_id"]: (t["state"], t["ended"]) for t in index.get("0:live").detail(evaluations=False)["trials"]}
    assert states["t1"] == ("stopped_by_user", "stopped by a user")
    assert states["t2"] == ("error", "ValueError: loss became nan")
    pd.DataFrame({"trial_id": ["t0", "t1", "t2"], "status": ["DONE", "STOPPED", "ERROR"],
                  "error": ["", "", "boom"]}).to_csv(sweep / "trials.csv", index=False)
    write_status(sweep, state=steer.FINISHED)
    study = index.get("0:live")
    assert study.status == "finished"
    assert [t.state for t in study.trials.values()] == ["finished", "stopped_by_user", "error"]


def test_a_sweep_whose_heartbeat_stopped_is_interrupted(root):
    write_status(root / "live", heartbeat_at=time.time() - 3600)
    assert Index(parse_roots([str(root)])).get("0:live").status == "interrupted"


def test_a_run_that_has_not_written_for_long_is_interrupted(root):
    folder = root / "2026" / "solo"
    (folder / "records.parquet").unlink()
    index = Index(parse_roots([str(root)]))
    assert index.get("0:2026/solo").status == "running"
    old = time.time() - 3600
    os.utime(folder / "records.csv", (old, old))
    assert Index(parse_roots([str(root)])).get("0:2026/solo").status == "interrupted"


@pytest.mark.parametrize("sid", ["0:../outside", "0:/etc", "0:live/../../outside", "0:live/./x", "1:live",
                                 "live", "x:live", "0:live\\..\\x", "0:live\x00", "0:s3://bucket/x", "0://x"])
def test_ids_resolve_only_inside_the_roots(root, sid):
    with pytest.raises(NotFound):
        Index(parse_roots([str(root)])).get(sid)


def test_a_symlink_out_of_the_root_is_neither_listed_nor_resolved(root, tmp_path):
    outside = tmp_path / "outside"
    write_run(outside / "secret")
    (root / "escape").symlink_to(outside / "secret")
    (root / "inside").symlink_to(root / "2026")  # a link that stays inside is fine
    index = Index(parse_roots([str(root)]))
    ids = {s["id"] for s in index.studies()}
    assert "0:escape" not in ids and "0:inside/solo" in ids
    with pytest.raises(NotFound):
        index.get("0:escape")
    with pytest.raises(NotFound):
        resolve(index.roots, "0:escape")


def test_a_root_that_is_itself_a_study(root):
    index = Index(parse_roots([str(root / "live")]))
    assert [s["id"] for s in index.studies()] == ["0:"]
    assert index.get("0:").name == "live"


def test_list_changes_are_numbered_for_resuming_clients(root):
    index = Index(parse_roots([str(root)]))
    index.scan()
    seq = index.seq
    assert index.changes_since(seq) == ([], [])
    write_trial(root / "live", "t2", stop_at=4_000)
    write_run(root / "new")
    assert index.scan()
    changed, removed = index.changes_since(seq)
    assert {s["id"] for s in changed} == {"0:live", "0:new"} and removed == []
    import shutil

    shutil.rmtree(root / "new")
    assert index.scan() and index.changes_since(index.seq - 1) == ([], ["0:new"])


def test_an_object_store_root_reads_appends_as_ranges(s3, reads):
    sweep = Loc(f"{s3}/svc-index/live")
    write_live_sweep(sweep)
    index = Index(parse_roots([f"{s3}/svc-index"]))
    assert [s["id"] for s in index.studies()] == ["0:live"]
    study = index.get("0:live")
    assert study.status == "running" and len(study.trials["t1"].records) == 2
    reads.clear()
    write_records(sweep / "trials" / "t1", rows("t1", stop_at=6_000))
    assert study.refresh()
    assert [(n, s > 0) for n, s, _ in reads] == [("records.csv", True)]
    assert len(study.trials["t1"].records) == 3
    json.dumps(study.detail(), default=str)  # everything the API sends is JSON
