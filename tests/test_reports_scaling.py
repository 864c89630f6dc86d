"""Throughput, weak- and strong-scaling figures on hand-computed tables."""
import math

import pandas as pd
import pytest

from scaling_study.errors import UserError
from scaling_study.results.records import assign_runs, normalize
from scaling_study.results.runs import run_summary, steady_throughput
from scaling_study.results.scaling import baseline_notes, strong_scaling, train_time_at, weak_scaling, WEAK_KEYS


def records(rows, source="hand.csv"):
    """Rows of (run_id, num_workers, per_worker_batch, seed, samples, train_time_s, ...) as records."""
    return assign_runs(normalize(pd.DataFrame(rows), source))


def run(run_id, n, evals, pwb=32, seed=0, gb=None, mode="weak", optimizer="lamb"):
    return [dict(run_id=run_id, trial_id="", optimizer=optimizer, num_workers=n, per_worker_batch=pwb,
                 global_batch=gb if gb is not None else pwb * n, seed=seed, scaling_mode=mode,
                 samples=s, train_time_s=t) for s, t in evals]


WEAK = (
    run("a", 1, [(100, 3.0), (300, 5.0), (500, 7.0)])                # 400 / 4 = 100/s
    + run("b", 2, [(200, 3.0), (600, 5.5), (1000, 8.0)])             # 800 / 5 = 160/s
    + run("c0", 4, [(400, 2.0), (1200, 4.5)], seed=0)                # 800 / 2.5 = 320/s
    + run("c1", 4, [(400, 2.0), (1200, 4.0)], seed=1)                # 800 / 2 = 400/s
)


def test_steady_throughput_leaves_out_the_first_window():
    thr = steady_throughput(records(WEAK))
    assert thr.to_dict() == pytest.approx({"a": 100.0, "b": 160.0, "c0": 320.0, "c1": 400.0})


def test_one_evaluation_falls_back_to_samples_over_train_time():
    assert steady_throughput(records(run("x", 1, [(300, 6.0)])))["x"] == pytest.approx(50.0)


def test_without_samples_the_throughput_column_is_averaged_after_the_first_window():
    rows = pd.DataFrame({"run_id": ["r"] * 3, "step": [1, 2, 3], "throughput": [10.0, 40.0, 60.0]})
    assert steady_throughput(records(rows))["r"] == pytest.approx(50.0)


def test_weak_scaling_efficiency_is_throughput_over_n_times_single_worker():
    table = weak_scaling(records(WEAK)).set_index("num_workers")
    assert table["baseline_workers"].eq(1).all()
    assert table.loc[2, "efficiency"] == pytest.approx(160 / (2 * 100))
    # Two seeds at N = 4: mean 360/s; their range against the baseline mean.
    assert table.loc[4, ["throughput_mean", "throughput_min", "throughput_max"]].tolist() == [360, 320, 400]
    assert table.loc[4, ["efficiency", "efficiency_min", "efficiency_max"]].tolist() == pytest.approx([0.9, 0.8, 1.0])
    assert table.loc[4, "ideal_throughput"] == pytest.approx(400)
    assert table.loc[4, "speedup"] == pytest.approx(3.6)
    assert table.loc[4, "n_runs"] == 2


def test_smallest_worker_count_is_the_baseline_when_n1_is_missing_and_a_note_says_so():
    rows = run("p", 2, [(100, 1.0), (400, 3.0)], pwb=64) + run("q", 4, [(100, 1.0), (580, 3.0)], pwb=64)
    table = weak_scaling(records(WEAK + rows))
    part = table[table["per_worker_batch"] == 64].set_index("num_workers")
    assert part["baseline_workers"].eq(2).all()
    assert part.loc[4, "efficiency"] == pytest.approx(240 / (2 * 150))  # (4/2) × 150/s is ideal
    notes = baseline_notes(table, WEAK_KEYS, "weak scaling")
    assert len(notes) == 1 and "per_worker_batch=64" in notes[0] and "N0 = 2" in notes[0]


def test_groups_with_a_single_worker_count_and_other_modes_are_dropped():
    lone = run("z", 1, [(100, 1.0), (300, 2.0)], pwb=8)
    strong = run("s", 8, [(100, 1.0), (300, 2.0)], mode="strong")
    table = weak_scaling(records(WEAK + lone + strong))
    assert sorted(table["num_workers"]) == [1, 2, 4] and set(table["per_worker_batch"]) == {32}


STRONG = (
    run("n1", 1, [(640, 10.0), (1280, 20.0)], pwb=64, gb=64, mode="strong")
    + run("n2", 2, [(640, 6.0), (1280, 12.0)], pwb=32, gb=64, mode="strong")
    + run("n4", 4, [(640, 4.0), (960, 6.0)], pwb=16, gb=64, mode="strong")   # stopped at 960 samples
)


def test_train_time_at_interpolates_from_the_origin():
    recs = records(STRONG)
    at = train_time_at(recs, pd.Series({"n1": 960.0, "n2": 320.0, "n4": 2000.0}))
    assert at["n1"] == pytest.approx(15.0) and at["n2"] == pytest.approx(3.0) and math.isnan(at["n4"])


def test_strong_scaling_times_the_work_every_run_did():
    table = strong_scaling(records(STRONG)).set_index("num_workers")
    assert table["samples"].eq(960).all()
    assert table["train_time_s_mean"].tolist() == pytest.approx([15.0, 9.0, 6.0])
    assert table.loc[2, "speedup"] == pytest.approx(15 / 9)
    assert table.loc[2, "efficiency"] == pytest.approx(15 / (2 * 9))
    assert table.loc[4, "efficiency"] == pytest.approx(15 / (4 * 6))


def test_strong_scaling_range_pairs_the_slowest_repeat_with_the_smallest_speedup():
    extra = run("n2b", 2, [(640, 8.0), (1280, 16.0)], pwb=32, gb=64, seed=1, mode="strong")
    table = strong_scaling(records(STRONG + extra)).set_index("num_workers")
    # At 960 samples: seeds take 9 s and 12 s; baseline 15 s.
    assert table.loc[2, ["speedup", "speedup_min", "speedup_max"]].tolist() == pytest.approx([15 / 10.5, 15 / 12, 15 / 9])


def test_missing_columns_name_the_file_and_the_columns():
    rows = pd.DataFrame({"run_id": ["a"], "samples": [1.0], "train_time_s": [1.0]})
    with pytest.raises(UserError, match=r"mine\.csv: weak-scaling efficiency needs columns num_workers, per_worker_batch"):
        weak_scaling(records(rows, "mine.csv"))
    with pytest.raises(UserError, match="strong-scaling efficiency needs columns num_workers, global_batch"):
        strong_scaling(records(rows, "mine.csv"))


def test_run_summary_reports_final_progress_and_metric():
    rows = [dict(run_id="a", step=s, samples=100 * s, train_time_s=float(s), f1=f) for s, f in [(1, 50.0), (2, 70.0), (3, 65.0)]]
    summary = run_summary(records(rows), "f1").iloc[0]
    assert (summary["final_step"], summary["samples"], summary["final_f1"], summary["best_f1"]) == (3, 300, 65.0, 70.0)
    assert summary["throughput"] == pytest.approx(100.0)
