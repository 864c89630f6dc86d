"""The records file: one row per evaluation; a restart cuts it back to its checkpoint's step and
rows written again replace, never duplicate."""
import math

import pandas as pd

from scaling_study.train.records import (
    COLUMNS, append_record, merge_row, progress_line, read_records, truncate_records, write_csv_atomic,
)


def row(step, loss=1.0, **extra):
    base = {c: math.nan for c in COLUMNS}
    base.update(run_id="r", trial_id="", task="squad", phase=1, step=step, samples=8 * step, throughput=10.0,
                loss=loss, f1=50.0, train_time_s=step, wall_time_s=step + 1)
    return base | extra


def test_merge_row_appends_and_replaces_replayed_steps(tmp_path):
    path = tmp_path / "records.csv"
    df = read_records(path)
    assert df.empty and tuple(df.columns) == COLUMNS
    for step in (4, 8, 12):
        df = merge_row(df, row(step))
    df = merge_row(df, row(8, loss=0.5))  # a restart from the step-4 checkpoint replays step 8
    assert list(df["step"]) == [4, 8] and df["loss"].iloc[-1] == 0.5
    write_csv_atomic(df, path)
    assert list(pd.read_csv(path)["step"]) == [4, 8]
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


def test_progress_line_names_the_metric():
    line = progress_line(row(4, f1=63.25))
    assert "step 4" in line and "f1 63.25" in line and "samples/s" in line


def test_a_restart_cuts_the_file_back_to_its_checkpoint_and_writes_each_step_once(tmp_path, capsys):
    for step in (4, 8):
        append_record(tmp_path, row(step))
    append_record(tmp_path, row(10, loss=float("inf")) | {"failed": "loss became inf"})  # a divergence
    assert list(read_records(tmp_path)["step"]) == [4, 8, 10]
    truncate_records(tmp_path, 8)  # re-run from the step-8 checkpoint
    for step in (12, 16):
        append_record(tmp_path, row(step, loss=0.25), verbose=True)
    rec = pd.read_csv(tmp_path / "records.csv")
    assert tuple(rec.columns) == COLUMNS, "only the contract's columns, whatever else was reported"
    assert list(rec["step"]) == [4, 8, 12, 16] and list(rec["loss"]) == [1.0, 1.0, 0.25, 0.25]
    assert capsys.readouterr().out.count("samples/s") == 2
    truncate_records(tmp_path / "nothing_here", 0)  # a fresh run: no file, nothing to cut
    assert not (tmp_path / "nothing_here").exists()
