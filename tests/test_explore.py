"""Exploring hyperparameters (reports/explore.py and its figures): the per-trial outcomes table,
best so far, PED-ANOVA importance, log axes for LRs and batches, and the sections in the report
and the static dashboard."""
import numpy as np
import pandas as pd
import pytest
from fixtures.reports.synthetic import sweep_records

from scaling_study.errors import UserError
from scaling_study.reports import explore
from scaling_study.reports.build import build_report
from scaling_study.reports.dashboard import render_dashboard
from scaling_study.reports.explore_figures import parallel_figure, slices_figure
from scaling_study.results.records import Results, assign_runs

KEYS = ("parallel", "importance", "history", "slices")


def _records(n: int = 24, seed: int = 0) -> pd.DataFrame:
    """Trials whose F1 depends on the LR only (peak at 1e-3); batch and optimizer are noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        lr, batch, opt = 10 ** rng.uniform(-4, -2), int(rng.choice([32, 64, 128, 256])), str(rng.choice(["lamb", "adamw"]))
        f1 = 80 - 20 * abs(np.log10(lr) + 3) + rng.normal(0, 0.2)
        for step, frac in ((1, 0.5), (2, 1.0)):
            rows.append({"source": "s", "trial_id": f"abc_{i:05d}", "run_id": f"abc_{i:05d}", "step": step,
                         "samples": step * batch, "train_time_s": float(step), "f1": f1 * frac,
                         "hp.optimizer.lr": lr, "hp.train.global_batch": batch, "hp.optimizer.name": opt})
    return assign_runs(pd.DataFrame(rows))


def test_outcomes_has_one_row_per_trial_in_the_order_made_with_its_best_value():
    records = _records(12)
    table = explore.outcomes(records, "f1")
    assert list(table["number"]) == list(range(1, 13)) and list(table["run"]) == sorted(table["run"])
    best = records.groupby("run")["f1"].max()
    assert table.set_index("run")["value"].to_dict() == pytest.approx(best.to_dict())
    assert set(explore.swept(records)) == {"hp.optimizer.lr", "hp.train.global_batch", "hp.optimizer.name"}
    assert explore.outcomes(records.assign(**{"hp.fixed": 1}), "f1").columns.tolist().count("hp.fixed") == 0


def test_best_so_far_never_gets_worse_in_the_metrics_direction():
    table = pd.DataFrame({"number": [1, 2, 3, 4], "run": list("abcd"), "value": [3.0, 5.0, 4.0, 6.0]})
    assert explore.best_so_far(table, "f1")["best_so_far"].tolist() == [3, 5, 5, 6]
    assert explore.best_so_far(table, "loss")["best_so_far"].tolist() == [3, 3, 3, 3]


def test_importance_finds_the_hyperparameter_that_drives_the_outcome():
    table = explore.importance(explore.outcomes(_records(), "f1"), "f1")
    assert table["param"].iloc[0] == "optimizer.lr" and table["importance"].sum() == pytest.approx(1.0)
    assert table["importance"].iloc[0] > 0.5


def test_importance_needs_enough_trials():
    with pytest.raises(UserError, match="at least 4 trials"):
        explore.importance(explore.outcomes(_records(3), "f1"), "f1")


def test_learning_rates_and_batches_are_on_log_axes():
    records = _records(8)

    class R:
        metric = "f1"
    fig = parallel_figure({"trial_outcomes": explore.outcomes(records, "f1")}, R)
    dims = {d.label: d for d in fig.data[0].dimensions}
    assert {"optimizer.lr (log)", "train.global_batch (log)", "optimizer.name", "F1 (%)"} == set(dims)
    lr = explore.outcomes(records, "f1")["hp.optimizer.lr"]
    assert list(dims["optimizer.lr (log)"].values) == pytest.approx(np.log10(lr).tolist())
    assert list(dims["optimizer.name"].ticktext) == ["adamw", "lamb"]
    assert fig.layout.meta["runs"] == explore.outcomes(records, "f1")["run"].tolist()  # line i is that trial
    slices = slices_figure({"trial_outcomes": explore.outcomes(records, "f1")}, R)
    assert [slices.layout[f"xaxis{i or ''}"].type for i in ("", 2, 3)] == ["log", "log", "category"]


def test_the_report_and_the_static_dashboard_offer_the_four_views():
    records = sweep_records()
    report = build_report(Results(assign_runs(records.assign(source="s")), None, ("s",)), None, "t")
    sections = {s.key: s for s in report.sections}
    assert all(sections[k].skipped is None for k in KEYS), {k: sections[k].skipped for k in KEYS}
    assert {"trial_outcomes", "param_importance", "best_so_far"} <= set(report.tables())
    page = render_dashboard(report)
    assert all(f'id="figure-{k}"' in page for k in KEYS)


def test_runs_without_swept_columns_are_told_apart_by_their_configuration():
    records = _records(6).drop(columns=["hp.optimizer.lr", "hp.train.global_batch", "hp.optimizer.name"])
    records = records.assign(optimizer=["lamb", "lamb", "adamw", "adamw"] * 3, peak_lr=1e-3, seed=0)
    assert explore.swept(records) == ["optimizer"]
    assert explore.outcomes(records, "f1")["optimizer"].tolist()[:2] == ["lamb", "adamw"]


def test_trials_that_all_tie_make_every_hyperparameter_equally_important():
    table = explore.outcomes(_records(8), "f1").assign(value=50.0)
    with pytest.warns(UserWarning):  # optuna says the top quantile cannot be told apart
        found = explore.importance(table, "f1")
    assert found["importance"].tolist() == pytest.approx([1 / 3] * 3)
