"""Time to target, its scaling across worker counts, ranking and the best trial."""
import math

import pandas as pd
import pytest

from scaling_study.errors import UserError
from scaling_study.results.records import assign_runs, normalize
from scaling_study.results.targets import (
    Target, best_trial, make_target, rank_by_time_to_target, resolve_target, target_scaling, time_to_target,
)


def records(rows):
    return assign_runs(normalize(pd.DataFrame(rows), "hand.csv"))


def run(run_id, n, evals, seed=0, optimizer="lamb", **extra):
    """evals: (train_time_s, wall_time_s, f1)."""
    return [dict(run_id=run_id, optimizer=optimizer, num_workers=n, per_worker_batch=32, global_batch=32 * n,
                 seed=seed, scaling_mode="weak", step=i + 1, samples=1000 * (i + 1), train_time_s=t,
                 wall_time_s=w, f1=f, **extra) for i, (t, w, f) in enumerate(evals)]


# LAMB's example: 64× the workers reach the target 49× sooner, an efficiency of 49/64.
LAMB = (
    run("n1", 1, [(2000.0, 2100.0, 80.0), (4900.0, 5000.0, 88.0), (6000.0, 6200.0, 90.0)])
    + run("n64", 64, [(50.0, 70.0, 87.9), (100.0, 130.0, 88.5), (150.0, 190.0, 89.0)])
    + run("n64b", 64, [(50.0, 70.0, 70.0), (100.0, 130.0, 87.0)], seed=1)  # never gets there
)
F1_88 = Target("f1", 88.0)


def test_time_to_target_is_the_first_evaluation_at_or_above_the_target():
    table = time_to_target(records(LAMB), F1_88).set_index("run")
    assert table.loc["n1", ["train_time_s", "wall_time_s", "step"]].tolist() == [4900.0, 5000.0, 2]  # 88.0 counts
    assert table.loc["n64", ["train_time_s", "f1_at_target", "best_f1"]].tolist() == [100.0, 88.5, 89.0]
    assert not table.loc["n64b", "reached"] and math.isnan(table.loc["n64b", "train_time_s"])
    assert table.loc["n64b", "best_f1"] == 87.0


def test_a_minimised_metric_reaches_its_target_from_above():
    rows = [dict(run_id="r", step=i, train_time_s=float(i), loss=v) for i, v in enumerate([3.0, 2.1, 1.9, 1.5])]
    table = time_to_target(records(rows), make_target("loss", 2.0))
    assert table["train_time_s"].tolist() == [2.0]


def test_time_to_target_speedup_and_efficiency_across_worker_counts():
    table = target_scaling(records(LAMB), F1_88, "weak").set_index("num_workers")
    assert table.loc[64, ["n_runs", "n_reached"]].tolist() == [2, 1]
    assert table.loc[64, "speedup"] == pytest.approx(49.0)
    assert table.loc[64, "efficiency"] == pytest.approx(49 / 64)  # 76.6 %
    assert table.loc[64, "wall_speedup"] == pytest.approx(5000 / 130)
    assert table.loc[1, "efficiency"] == pytest.approx(1.0)


def test_swept_hyperparameters_split_time_to_target_groups_but_seeds_do_not():
    rows = [dict(r, **{"hp.optimizer.lr": 1e-3, "hp.seed": r["seed"]}) for r in LAMB]
    rows += [dict(r, **{"hp.optimizer.lr": 2e-3, "hp.seed": 0}, run_id=r["run_id"] + "-lr2")
             for r in run("n1", 1, [(1000.0, 1100.0, 89.0)]) + run("n64", 64, [(40.0, 50.0, 88.0)])]
    table = target_scaling(records(rows), F1_88, "weak")
    assert set(table["hp.optimizer.lr"]) == {1e-3, 2e-3} and "hp.seed" not in table.columns
    fast = table[table["hp.optimizer.lr"] == 2e-3].set_index("num_workers")
    assert fast.loc[64, "speedup"] == pytest.approx(1000 / 40)


def test_ranking_puts_reached_runs_first_fastest_first():
    ranked = rank_by_time_to_target(records(LAMB), F1_88)
    assert ranked["run"].tolist() == ["n64", "n1", "n64b"] and ranked["rank"].tolist() == [1, 2, 3]


def test_best_trial_is_the_run_with_the_best_metric():
    best = best_trial(records(LAMB), "f1")
    assert best["run"] == "n1" and best["best_f1"] == 90.0
    rows = [dict(run_id=r, train_time_s=1.0, loss=v) for r, v in [("a", 2.0), ("b", 1.0), ("c", 3.0)]]
    assert best_trial(records(rows), "loss", mode="min")["run"] == "b"


def test_best_trial_carries_the_swept_hyperparameters_for_export():
    rows = [dict(r, **{"hp.optimizer.lr": 0.004}) for r in LAMB]
    assert best_trial(records(rows), "f1")["hp.optimizer.lr"] == 0.004


@pytest.mark.parametrize("metric, value, message", [
    ("mlm_acc", 60, "fraction 0-1"), ("f1", 188, "percentage"), ("bleu", 30, "valid metrics are f1"),
])
def test_impossible_targets_are_refused(metric, value, message):
    with pytest.raises(UserError, match=message):
        make_target(metric, value)


def test_target_comes_from_the_arguments_else_the_records():
    recs = records([dict(r, target_metric="f1", target_value=88.0) for r in LAMB])
    assert resolve_target(recs) == Target("f1", 88.0, "max")
    assert resolve_target(recs, "em", 80.0) == Target("em", 80.0, "max")
    assert resolve_target(records(LAMB)) is None
    with pytest.raises(UserError, match="together"):
        resolve_target(recs, "f1", None)


def test_records_with_several_targets_make_the_user_choose():
    rows = [dict(r, target_metric="f1", target_value=88.0 if r["run_id"] == "n1" else 90.0) for r in LAMB]
    with pytest.raises(UserError, match="several targets .*f1=88.*f1=90"):
        resolve_target(records(rows))
