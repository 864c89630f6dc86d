"""The `report` command end to end on synthetic records: files, tables, skips and atomic writes."""
import argparse
import re

import pandas as pd
import pytest

from fixtures.reports.synthetic import strong_records, write_sweep
from scaling_study.errors import UserError
from scaling_study.reports import build, cli
from scaling_study.results.records import load_results
from scaling_study.results.scaling import weak_scaling


def report(*argv):
    """Run `scaling-study report ARGV` through the subcommand's own parser."""
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["report", *map(str, argv)])
    return args.func(args)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    sweep = write_sweep(root / "sweep", workers=(1, 2, 4), seeds=(0, 1), lrs=(1e-3, 2e-3))
    (root / "strong").mkdir()
    strong_records().to_csv(root / "strong" / "records.csv", index=False)
    return root, sweep, root / "strong"


def test_report_writes_a_dashboard_and_the_table_behind_every_chart(study, capsys):
    root, sweep, strong = study
    out = root / "out"
    assert report(sweep, strong, "--out", out, "--target-metric", "f1", "--target", 85) == 0
    tables = {p.stem for p in (out / "tables").glob("*.csv")}
    assert tables == {"weak_scaling", "strong_scaling", "time_to_target", "target_scaling_weak",
                      "target_scaling_strong", "steps_to_target", "tradeoff_fit", "tradeoff_holdout",
                      "tradeoff_curve", "recommendation",
                      "metric_curves", "final_metric_grid", "trial_lifetimes", "trials",
                      "trial_outcomes", "param_importance", "best_so_far"}  # reports/explore.py
    printed = capsys.readouterr().out
    assert f"dashboard: {out / 'dashboard.html'}" in printed and "17 CSV files" in printed
    # The synthetic model "bert-tiny" has no size to count: the projection says which flag to give.
    assert "skipped:   Projected scaling to many GPUs: model 'bert-tiny'" in printed and "--grad-bytes" in printed
    # The CSV is the table the pure function computes from the same records.
    expected = weak_scaling(load_results([sweep, strong]).records)
    pd.testing.assert_frame_equal(pd.read_csv(out / "tables" / "weak_scaling.csv"), expected,
                                  check_dtype=False, check_exact=False)


def test_synthetic_weak_scaling_loses_efficiency_as_all_reduce_grows(study):
    root, sweep, _ = study
    table = weak_scaling(load_results([sweep]).records)
    for _, group in table.groupby("optimizer"):
        eff = group.sort_values("num_workers")["efficiency"].tolist()
        assert eff[0] == pytest.approx(1.0) and all(a > b for a, b in zip(eff, eff[1:])) and eff[-1] > 0.5


def test_dashboard_is_self_contained_and_states_its_definitions(study):
    root, sweep, strong = study
    out = root / "page"
    report(sweep, strong, "--out", out, "--target-metric", "f1", "--target", 85, "--title", "A <b>study</b>")
    page = (out / "dashboard.html").read_text(encoding="utf-8")
    assert not re.search(r"<(script|link)[^>]*\b(src|href)=", page)  # nothing fetched: plotly.js is inline
    assert "Plotly.newPlot" in page and page.count('class="plotly-graph-div"') == 11  # and steps vs batch, and explore's 4
    assert "throughput(N) / (N × throughput(1))" in page and "T(1) / (N × T(N))" in page
    assert "A &lt;b&gt;study&lt;/b&gt;" in page and "not reached" in page


def test_a_table_with_only_some_columns_skips_the_other_figures_with_a_note(tmp_path, capsys):
    published = tmp_path / "published.csv"
    pd.DataFrame({"optimizer": ["lamb"] * 3, "per_worker_batch": [32] * 3, "num_workers": [1, 8, 64],
                  "throughput": [100.0, 760.0, 5000.0]}).to_csv(published, index=False)
    assert report(published, "--out", tmp_path / "out") == 0
    printed = capsys.readouterr().out
    assert f"skipped:   Strong scaling: speedup and efficiency: {published}: strong-scaling efficiency needs columns" in printed
    page = (tmp_path / "out" / "dashboard.html").read_text(encoding="utf-8")
    # strong, target, steps vs batch, noise scale, projection, recommendation, curves, grid, lifetimes,
    # and explore's parallel coordinates, importance, best so far, slices (no metric)
    assert page.count("Not drawn:") == 13
    eff = pd.read_csv(tmp_path / "out" / "tables" / "weak_scaling.csv").set_index("num_workers")["efficiency"]
    assert eff[64] == pytest.approx(5000 / (64 * 100))


def test_published_times_to_target_give_speedup_and_efficiency(tmp_path, capsys):
    published = tmp_path / "published.csv"  # one row per hardware size: the time it took to F1 ≥ 90.5
    pd.DataFrame({"optimizer": ["lamb"] * 3 + ["adamw"] * 2, "num_workers": [16, 256, 1024, 16, 256],
                  "train_time_s": [4900.0, 400.0, 100.0, 5000.0, 900.0], "f1": [90.6, 90.5, 90.7, 90.1, 90.6]}
                 ).to_csv(published, index=False)
    assert report(published, "--out", tmp_path / "out", "--target-metric", "f1", "--target", 90.5) == 0
    table = pd.read_csv(tmp_path / "out" / "tables" / "target_scaling_weak.csv")
    lamb = table[table["optimizer"] == "lamb"].set_index("num_workers")
    assert lamb.loc[1024, "speedup"] == pytest.approx(49.0) and lamb.loc[1024, "efficiency"] == pytest.approx(49 / 64)
    assert "no N0 = 16 run reached f1 ≥ 90.5 for optimizer=adamw" in capsys.readouterr().out


def test_nothing_to_report_is_a_user_error_naming_the_file_and_what_is_missing(tmp_path):
    path = tmp_path / "bare.csv"
    pd.DataFrame({"run_id": ["a"], "loss": [1.0]}).to_csv(path, index=False)
    with pytest.raises(UserError, match=rf"(?s)nothing to report from {path}.*weak-scaling efficiency needs columns num_workers"):
        report(path, "--out", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failed_write_leaves_the_previous_report_whole(study, tmp_path, monkeypatch):
    _, sweep, _ = study
    out = tmp_path / "out"
    report(sweep, "--out", out)
    before = {p.name: p.read_bytes() for p in (out / "tables").iterdir()}

    def broken(self, *args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        report(sweep, "--out", out, "--target-metric", "f1", "--target", 85)
    assert {p.name: p.read_bytes() for p in (out / "tables").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left behind


def test_a_report_replaces_a_previous_one_but_not_a_foreign_directory(study, tmp_path):
    _, sweep, _ = study
    out = tmp_path / "out"
    report(sweep, "--out", out)
    report(sweep, "--out", out, "--target-metric", "f1", "--target", 85)
    assert (out / "tables" / "time_to_target.csv").is_file()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a report"):
        build.write_report(build.Report("t", (), None, None, []), "<html></html>", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
