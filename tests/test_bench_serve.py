"""`bench serve` at a tiny size (its output's shape, no times asserted), its synthetic root as
the index reads it, and the service's ways of staying fast on a large root that the bench
measures: listing from outlines before the records are read, one parse for a study's files,
one message per change shared by every client of a study."""
import asyncio
import json
import re
import time

import pandas as pd
import pytest

from fixtures.service import rows, write_live_sweep, write_records, write_run
from scaling_study.bench.serve import prepare_root
from scaling_study.cli import main
from scaling_study.errors import UserError
from scaling_study.service import events
from scaling_study.service.index import Index
from scaling_study.service.study import CURVE_POINTS
from scaling_study.service.roots import parse_roots
from scaling_study.service.tail import FileCache, Stat
from scaling_study.storage import Loc

BIG_FIGURES = ("big run detail, cold", "big run detail, warm median", "studies list, 2 clients on big run, median",
               "studies list, 2 clients on big run, p95")
FIGURES = ("studies list, cold", "studies list, every study read", "studies list, warm median",
           "studies list, warm p95", "one study, cold", "one study, warm median", "one study, warm p95",
           "push, write -> client, p50", "push, write -> client, p95", "push, write -> client, max")


def test_the_bench_prints_every_figure_against_its_target(tmp_path, capsys):
    args = ["bench", "serve", "--studies", "3", "--trials", "2", "--evals", "3", "--clients", "2",
            "--pushes", "2", "--interval", "0.1", "--repeats", "2", "--root", str(tmp_path / "root"),
            "--big-mb", "0.4", "--big-clients", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 studies x 2 trials x 3 evaluations (18 rows" in out
    for figure in FIGURES:
        line = next(line for line in out.splitlines() if line.startswith(figure))
        assert re.search(r"\d+ ms|\d+\.\d s", line), line
    for figure in BIG_FIGURES:
        line = next(line for line in out.splitlines() if line.startswith(figure))
        assert re.search(r"\d+ ms|\d+\.\d s", line), line
    points = re.search(r"big run detail, cold \((\d+) of ([\d,]+) points\)", out)
    assert int(points[1]) <= CURVE_POINTS < int(points[2].replace(",", ""))  # 0.4 MB: 2,000 rows, decimated
    assert re.search(r"big run, service memory with 2 clients: [\d,]+ MiB", out)
    judged = [line for line in out.splitlines() if line.endswith("met")]
    assert len(judged) == 13  # list cold, warm x2, study cold, warm x2, push p95; big: detail x3, list x2, memory
    assert "rows that never arrived: 0 of 4" in out  # both clients got both rows
    assert not (tmp_path / "root").exists()  # no --keep


def test_the_synthetic_root_reads_as_real_sweeps(tmp_path):
    sweeps, reused = prepare_root(tmp_path, studies=3, trials=2, evals=4)
    assert not reused and prepare_root(tmp_path, studies=3, trials=2, evals=4)[1]
    listed = {s["id"]: s for s in Index(parse_roots([str(tmp_path)])).studies()}
    assert set(listed) == {f"0:{s.name}" for s in sweeps}
    running, finished = listed["0:sweep_00000"], listed["0:sweep_00001"]
    assert (running["status"], finished["status"]) == ("running", "finished")
    assert finished["counts"] == {"finished": 2} and finished["workers"] == [1, 2]
    best = max(pd.read_csv(f)["f1"].max() for f in (tmp_path / "sweep_00001" / "trials").glob("*/records.csv"))
    assert finished["metric"]["name"] == "f1" and finished["best"]["value"] == pytest.approx(best)
    with pytest.raises(UserError, match="not empty"):
        prepare_root(tmp_path, studies=4, trials=2, evals=4)


# --- listing before reading -------------------------------------------------------------------

@pytest.fixture
def root(tmp_path):
    top = tmp_path / "results"
    write_live_sweep(top / "live")
    write_live_sweep(top / "other")
    write_run(top / "solo")
    return top


def test_a_scan_past_its_budget_lists_outlines_and_get_reads_them(root):
    index = Index(parse_roots([str(root)]), read_budget_s=0.0)
    index._start = lambda name, target: None  # no background reading in this test
    outline = {s["id"]: s for s in index.studies()}["0:live"]
    assert outline["loading"] and outline["best"] is None and outline["workers"] == []
    assert outline["status"] == "running" and outline["counts"] == {"stopped": 1, "running": 2, "pending": 1}
    seq = index.seq
    study = index.get("0:live")
    assert study.loaded and len(study.trials["t1"].records) == 2
    changed, _ = index.changes_since(seq)
    [summary] = changed
    assert not summary["loading"] and summary["best"]["trial_id"] == "t0" and summary["workers"] == [1, 2]
    at_once = Index(parse_roots([str(root)])).get("0:live").summary()
    assert {**summary, "seq": 0} == {**at_once, "seq": 0}  # as if read at once
    run = {s["id"]: s for s in index.studies()}["0:solo"]
    assert run["loading"] and (run["status"], run["counts"]) == ("finished", {"finished": 1})


def test_outlined_studies_are_read_in_the_background(root):
    import threading

    index = Index(parse_roots([str(root)]), read_budget_s=0.0)
    start, gate = index._start, threading.Event()
    # The background readers wait for the first list to be taken: otherwise a small study may be
    # read before the list is answered, and the list's "loading" depends on who wins.
    index._start = lambda name, target: start(name, lambda: (gate.wait(30), target()))
    assert all(s["loading"] for s in index.studies())
    gate.set()
    deadline = time.monotonic() + 30
    while any(s["loading"] for s in index.studies(max_age=60)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(s["loading"] for s in index.studies(max_age=60))


def test_a_study_whose_records_do_not_parse_is_listed_from_its_outline(root):
    (root / "live" / "trials" / "t1" / "records.csv").write_text("step,f1\n1,2\n1,2,3,4\n")
    index = Index(parse_roots([str(root)]), read_budget_s=60.0)
    index._start = lambda name, target: None
    listed = {s["id"]: s for s in index.studies()}
    assert listed["0:live"]["loading"] and listed["0:live"]["status"] == "running"
    assert not listed["0:other"]["loading"]  # the other study is read as usual


# --- one parse for a study's files -------------------------------------------------------------

def _files(tmp_path, frames):
    out = []
    for i, frame in enumerate(frames):
        path = tmp_path / f"t{i}" / "records.csv"
        write_records(path.parent, frame)
        st = path.stat()
        out.append((Loc(str(path)), Stat(st.st_size, st.st_mtime_ns)))
    return out


@pytest.mark.parametrize("case", ["plain", "blank count", "text in a number column", "quoted"])
def test_files_parsed_together_read_as_each_alone(tmp_path, case):
    frames = [rows("t0"), rows("t1"), rows("t2")]
    if case == "blank count":
        frames[1] = frames[1].assign(num_workers=float("nan"))
    elif case == "text in a number column":
        frames[2] = frames[2].assign(loss="diverged")
    elif case == "quoted":
        frames[0] = frames[0].assign(model="bert, tiny")
    files = _files(tmp_path, frames)
    together = FileCache().csv_many(files)
    for (loc, stat), table in zip(files, together):
        alone = FileCache().csv(loc, stat)
        pd.testing.assert_frame_equal(table.frame, alone.frame)
        assert (table.consumed, table.probe, table.reset, table.appended) == (alone.consumed, alone.probe, True, len(alone.frame))


# --- one message per change -------------------------------------------------------------------

def test_clients_of_a_study_share_its_messages(root, monkeypatch):
    monkeypatch.setattr(events, "TICK_S", 0.01)
    monkeypatch.setattr(events, "REFRESH_S", 0.0)
    index = Index(parse_roots([str(root)]))
    made = []
    study = index.get("0:live")
    real = type(study).detail
    monkeypatch.setattr(type(study), "detail", lambda self, **kw: made.append(kw) or real(self, **kw))

    async def connected():
        return False

    async def first_data(stream, event):
        async for chunk in stream:
            if chunk.startswith(f"event: {event}"):
                return chunk

    async def scenario():
        streams = [events.study_stream(index, "0:live", None, connected) for _ in range(3)]
        snapshots = [await first_data(s, "snapshot") for s in streams]
        write_records(root / "live" / "trials" / "t1", rows("t1", stop_at=6_000))
        updates = [await first_data(s, "update") for s in streams]
        for s in streams:
            await s.aclose()
        return snapshots, updates

    snapshots, updates = asyncio.run(scenario())
    assert len(set(snapshots)) == 1 and len(set(updates)) == 1
    assert made == [{"since": None}, {"since": 1}]  # one snapshot and one update made, for all three
    update = json.loads(updates[0].split("data: ", 1)[1])
    assert [r["samples"] for r in update["evaluations"]["t1"]] == [6_000]
