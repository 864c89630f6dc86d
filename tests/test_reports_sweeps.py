"""Learning curves, the LR × batch grid, trial lifetimes and the trials table."""
import pandas as pd
import pytest

from scaling_study.errors import UserError
from scaling_study.results.records import assign_runs, normalize
from scaling_study.results.sweeps import (
    final_metric_grid, metric_curves, primary_metric, trial_lifetimes, trials_table,
)


def records(rows, source="/s/records.csv"):
    return assign_runs(normalize(pd.DataFrame(rows), source))


def trial(tid, opt, lr, batch, f1s, seed=0, source_lr=True):
    rows = [dict(run_id="sweep", trial_id=tid, optimizer=opt, peak_lr=lr * 2, global_batch=batch, seed=seed,
                 step=i + 1, samples=100 * (i + 1), train_time_s=float(i + 1), f1=f) for i, f in enumerate(f1s)]
    if source_lr:
        rows = [dict(r, **{"hp.optimizer.lr": lr}) for r in rows]
    return rows


SWEEP = (trial("t1", "lamb", 1e-3, 64, [50.0, 70.0, 80.0]) + trial("t2", "lamb", 1e-3, 64, [50.0, 70.0, 84.0], seed=1)
         + trial("t3", "lamb", 2e-3, 64, [60.0, 75.0]) + trial("t4", "adamw", 1e-3, 128, [40.0, 45.0, 52.0]))


def test_grid_is_the_mean_final_metric_per_optimizer_batch_and_swept_lr():
    grid = final_metric_grid(records(SWEEP), "f1")
    assert grid.to_dict("list") == {
        "optimizer": ["adamw", "lamb", "lamb"], "global_batch": [128, 64, 64], "lr": [1e-3, 1e-3, 2e-3],
        "lr_column": ["hp.optimizer.lr"] * 3, "final_f1": [52.0, 82.0, 75.0], "n_runs": [1, 2, 1],
    }


def test_grid_falls_back_to_peak_lr_without_a_swept_lr():
    grid = final_metric_grid(records(trial("r", "lamb", 1e-3, 64, [10.0, 20.0], source_lr=False)), "f1")
    assert grid[["lr", "lr_column"]].values.tolist() == [[2e-3, "peak_lr"]]


def test_curves_are_the_metric_at_each_evaluation_in_training_order():
    shuffled = records(SWEEP).sample(frac=1.0, random_state=0)
    curves = metric_curves(shuffled, "f1")
    t1 = curves[curves["run"] == "t1"]
    assert t1["train_time_s"].tolist() == [1.0, 2.0, 3.0] and t1["f1"].tolist() == [50.0, 70.0, 80.0]
    assert curves.columns[-1] == "f1"


def test_lifetimes_from_records_mark_trials_shorter_than_the_longest():
    table = trial_lifetimes(records(SWEEP))
    short = table.set_index("trial_id")
    assert short.loc["t3", "stopped_early"] and not short.loc["t1", "stopped_early"]
    assert (short["basis"] == "records (inferred)").all()


def test_lifetimes_prefer_trials_csv():
    trials = pd.DataFrame({"source": ["/s/trials.csv"] * 2, "trial_id": ["a", "b"], "samples": [10.0, 40.0],
                           "stopped_early": [True, False], "status": ["TERMINATED", "ERROR"]})
    table = trial_lifetimes(records(SWEEP), trials)
    assert table[["trial_id", "samples", "stopped_early", "status"]].values.tolist() == [
        ["b", 40.0, False, "ERROR"], ["a", 10.0, True, "TERMINATED"]]


def test_lifetimes_need_a_sweep():
    with pytest.raises(UserError, match="no trial_id is set"):
        trial_lifetimes(records([dict(run_id="r", trial_id="", samples=1.0)]))


def test_trials_table_joins_status_from_the_same_sweep_directory():
    trials = pd.DataFrame({"source": ["/s/trials.csv", "/other/trials.csv"], "trial_id": ["t1", "t2"],
                           "status": ["TERMINATED", "ERROR"], "stopped_early": [False, True]})
    table = trials_table(records(SWEEP), trials, "f1").set_index("run")
    assert table.loc["t1", "status"] == "TERMINATED" and pd.isna(table.loc["t2", "status"])
    assert table.loc["t2", "best_f1"] == 84.0 and table.loc["t3", "n_evals"] == 2


def test_primary_metric_prefers_the_target_then_f1_then_mlm_accuracy():
    assert primary_metric(records(SWEEP)) == "f1"
    assert primary_metric(records(SWEEP), "em") == "em"
    mlm = records([dict(run_id="m", f1=float("nan"), mlm_acc=0.4)])
    assert primary_metric(mlm) == "mlm_acc"
    with pytest.raises(UserError, match="no metric to plot"):
        primary_metric(records([dict(run_id="m", loss=1.0)]))
