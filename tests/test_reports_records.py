"""Loading results: run dirs, sweep dirs, CSV/Parquet files, types, run labels and errors."""
import pandas as pd
import pytest

from scaling_study.errors import UserError
from scaling_study.results.records import Needs, load_results


def write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    frame.to_parquet(path) if path.suffix == ".parquet" else frame.to_csv(path, index=False)
    return path


ROWS = [dict(run_id="007", trial_id="", num_workers=2, samples=s, train_time_s=s / 10, f1=f,
             target_reached=f >= 50) for s, f in [(100, 40.0), (200, 55.0)]]


def test_a_run_dir_a_sweep_dir_and_a_file_load_into_one_table(tmp_path):
    write(tmp_path / "run" / "records.csv", ROWS)
    sweep_rows = [dict(r, run_id="s", trial_id=t) for t in ("t1", "t2") for r in ROWS]
    write(tmp_path / "sweep" / "records.csv", sweep_rows)
    write(tmp_path / "sweep" / "trials.csv", [dict(trial_id="t1", status="TERMINATED", stopped_early=False),
                                               dict(trial_id="t2", status="TERMINATED", stopped_early=True)])
    write(tmp_path / "published.parquet", [dict(r, run_id="p") for r in ROWS])
    results = load_results([tmp_path / "run", tmp_path / "sweep", tmp_path / "published.parquet"])
    recs = results.records
    assert sorted(recs["run"].unique()) == ["007", "p", "t1", "t2"]  # ids stay strings: "007"
    assert recs["num_workers"].dtype == "int64" and recs["target_reached"].dtype == bool
    assert results.trials["stopped_early"].tolist() == [False, True]
    assert len(results.sources) == 3 and results.sources[1].endswith("sweep/records.csv")


def test_a_sweep_not_gathered_yet_is_read_from_its_trials(tmp_path):
    """A running sweep, or one whose driver was killed, has no records.csv yet: its trials' own
    records are read, with their swept values as hp. columns; a trial without rows adds none."""
    import json

    sweep = tmp_path / "sweep"
    for trial, lr in (("t1", 0.01), ("t2", 0.02), ("t3", 0.04)):
        (sweep / "trials" / trial).mkdir(parents=True)
        (sweep / "trials" / trial / "params.json").write_text(
            json.dumps({"trial_id": trial, "params": {"optimizer.lr": lr}}))
        if trial != "t3":  # t3 has not evaluated yet
            write(sweep / "trials" / trial / "records.csv", [dict(r, run_id="s", trial_id=trial) for r in ROWS])
    results = load_results([sweep])
    recs = results.records
    assert sorted(recs["run"].unique()) == ["t1", "t2"] and len(recs) == 4
    assert recs.groupby("run")["hp.optimizer.lr"].first().to_dict() == {"t1": 0.01, "t2": 0.02}
    assert results.trials is None and results.sources[0].endswith("sweep/trials")
    for trial in ("t1", "t2"):
        (sweep / "trials" / trial / "records.csv").unlink()
    with pytest.raises(UserError, match="no trial of this sweep has recorded an evaluation yet"):
        load_results([sweep])


def test_runs_sharing_a_label_in_two_files_are_kept_apart(tmp_path):
    a = write(tmp_path / "a" / "records.csv", ROWS)
    b = write(tmp_path / "b" / "records.csv", ROWS)
    runs = set(load_results([a, b]).records["run"])
    assert runs == {f"{a}:007", f"{b}:007"}


def test_a_table_without_run_ids_is_one_run_per_configuration(tmp_path):
    rows = [dict(optimizer=o, num_workers=n, samples=100, train_time_s=1.0) for o in ("lamb", "adamw") for n in (1, 2)]
    recs = load_results([write(tmp_path / "published.csv", rows)]).records
    assert recs["run"].tolist() == ["optimizer=lamb num_workers=1", "optimizer=lamb num_workers=2",
                                    "optimizer=adamw num_workers=1", "optimizer=adamw num_workers=2"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nowhere", "no such file"),
    (lambda p: (p / "d").mkdir() or p / "d", "must hold records.csv or records.parquet"),
    (lambda p: (p / "e.csv").write_text("run_id,f1\n") and p / "e.csv", "e.csv: the table has no rows"),
    (lambda p: (p / "x.json").write_text("{}") and p / "x.json", "expected a .csv or .parquet"),
    (lambda p: (p / "n.csv").write_text("run_id,num_workers\na,four\n") and p / "n.csv", "'num_workers' must be numeric"),
    (lambda p: (p / "b.csv").write_text("run_id,stopped_early\na,maybe\n") and p / "b.csv", "must be true/false"),
])
def test_unreadable_inputs_are_user_errors_naming_the_path(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(UserError, match=message) as err:
        load_results([path])
    assert str(path.name) in str(err.value)


def test_needs_names_missing_columns_and_leaves_out_sources_that_lack_them():
    recs = pd.DataFrame({"source": ["a.csv", "a.csv", "b.csv"], "num_workers": [1, 2, None],
                         "samples": [1, 2, 3], "train_time_s": [1, 2, 3]})
    needs = Needs("weak scaling", ("num_workers", "per_worker_batch"), (("samples", "train_time_s"), ("throughput",)))
    assert needs.missing(recs) == "column per_worker_batch"
    recs["per_worker_batch"] = 32
    rows, notes = needs.usable(recs)
    assert set(rows["source"]) == {"a.csv"} and notes == ["b.csv left out of weak scaling: it lacks column num_workers"]
    assert Needs("x", any_of=(("samples", "step"), ("throughput",))).missing(recs) == "either samples+step or throughput"
