"""The answers in the report: steps to target against batch, noise scale, projection and the
recommendation, drawn by `scaling-study report` and the study service from the same sections."""
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fixtures.service import write_live_sweep
from scaling_study.errors import UserError
from scaling_study.reports.build import build_report
from scaling_study.results.records import Results, assign_runs, normalize
from scaling_study.results.targets import make_target
from scaling_study.service.app import create_app
from test_answers_recommend import records as crafted
from test_reports_build import report

ANSWERS = ("tradeoff", "noise", "projection", "recommendation")


@pytest.fixture
def crafted_csv(tmp_path):
    """LAMB and AdamW swept over batches 32 … 512 on 2 workers (tests/test_answers_recommend.py)."""
    path = tmp_path / "crafted.csv"
    crafted().drop(columns=["run", "source"]).to_csv(path, index=False)
    return path


def sections_of(table: pd.DataFrame, target=make_target("f1", 88), **kwargs):
    results = Results(assign_runs(normalize(table, "r.csv")), None, ("r.csv",))
    return {s.key: s for s in build_report(results, target, **kwargs).sections}


def test_the_report_answers_with_a_recommendation_per_worker_count(crafted_csv, tmp_path, capsys):
    out = tmp_path / "out"
    assert report(crafted_csv, "--out", out, "--target-metric", "f1", "--target", 88) == 0
    tables = {p.stem for p in (out / "tables").glob("*.csv")}
    assert {"steps_to_target", "tradeoff_fit", "projection", "allreduce_check", "recommendation"} <= tables
    rec = pd.read_csv(out / "tables" / "recommendation.csv").set_index("num_workers")
    assert rec.loc[2, "basis"] == "measured" and rec.loc[2, "run"] == "lamb-32"
    assert (rec.loc[8, "basis"], rec.loc[8, "optimizer"], rec.loc[8, "global_batch"]) == ("projected", "lamb", 32)
    assert rec.loc[1024, "basis"] == "extrapolated" and "S_min" in rec.loc[1024, "detail"]
    assert rec[["time_lo_s", "time_hi_s"]].notna().all().all()
    printed = capsys.readouterr().out
    # Nothing given: the default cluster, and gradient bytes counted from the named size "tiny".
    assert "note:      projected for nvlink4+8xnet400 (8/node)" in printed
    assert "squad model 'tiny': 4.37 M parameters × 4 bytes" in printed
    assert "skipped:   Gradient noise scale: " in printed and "needs column grad_noise_scale" in printed
    page = (out / "dashboard.html").read_text(encoding="utf-8")
    assert '<details open><summary>Table <code>recommendation</code>' in page  # the answer, shown open
    for key in ("tradeoff", "projection"):
        assert f'id="figure-{key}"' in page


def test_flags_change_the_plan_and_a_single_node_projects_no_further(crafted_csv, tmp_path, capsys):
    report(crafted_csv, "--out", tmp_path / "out", "--target-metric", "f1", "--target", 88,
           "--cluster", "nvlink3", "--grad-bytes", "1.34e9", "--algorithm", "ring", "--overlap", "0.5")
    printed = capsys.readouterr().out
    assert "projected for nvlink3 (8/node) with a ring all-reduce of 1340 MB per step (--grad-bytes), 50%" in printed
    assert "no projection beyond 8 GPUs (left out 16, 32" in printed and "--cluster nvlink3+8xnet400" in printed
    projection = pd.read_csv(tmp_path / "out" / "tables" / "projection.csv")
    assert set(projection["num_workers"]) == {8} and set(projection["algorithm"]) == {"ring"}
    assert set(pd.read_csv(tmp_path / "out" / "tables" / "recommendation.csv")["num_workers"]) == {1, 2, 4, 8}


def test_answer_sections_skip_saying_what_they_lack():
    table = crafted()
    sections = sections_of(table.assign(model="bert-large-uncased"))
    assert "model 'bert-large-uncased'" in sections["projection"].skipped
    assert "--grad-bytes" in sections["projection"].skipped
    assert sections["recommendation"].notes[0].startswith("measured rows only; nothing projected: model")
    untimed = sections_of(table.drop(columns=["time_compute_s"]))
    assert "time_compute_s" in untimed["projection"].skipped
    rec = untimed["recommendation"].tables["recommendation"].set_index("num_workers")
    assert rec.loc[8, "basis"] == "none" and "time_compute_s" in rec.loc[8, "detail"]
    untargeted = sections_of(table, target=None)
    for key in ("tradeoff", "recommendation"):
        assert "no target" in untargeted[key].skipped
    unreached = sections_of(table, target=make_target("f1", 99))
    assert unreached["tradeoff"].skipped == "no run reached f1 ≥ 99: steps to target need runs that reached it"


def test_the_noise_section_draws_where_records_carry_the_noise_scale():
    table = crafted()
    noisy = table.assign(grad_noise_scale=table["global_batch"].astype(float))
    section = sections_of(noisy)["noise"]
    assert section.skipped is None and set(section.tables["noise_scale"]["run"]) == set(noisy["run"])


def test_cpu_records_need_a_device_profile_and_a_named_one_projects_them(crafted_csv, tmp_path, capsys):
    cpu = tmp_path / "cpu.csv"
    pd.read_csv(crafted_csv).assign(device="cpu").to_csv(cpu, index=False)
    report(cpu, "--out", tmp_path / "refused", "--target-metric", "f1", "--target", 88)
    printed = capsys.readouterr().out
    assert "skipped:   Projected scaling to many GPUs" in printed and "--device-profile" in printed
    rec = pd.read_csv(tmp_path / "refused" / "tables" / "recommendation.csv").set_index("num_workers")
    assert rec.loc[8, "basis"] == "none" and "measured on cpu" in rec.loc[8, "detail"]
    report(cpu, "--out", tmp_path / "h100", "--target-metric", "f1", "--target", 88, "--device-profile", "h100-sxm-bf16")
    rec = pd.read_csv(tmp_path / "h100" / "tables" / "recommendation.csv").set_index("num_workers")
    assert rec.loc[8, "basis"] == "projected" and rec.loc[8, "device"] == "h100-sxm-bf16 (derived from FLOPs)"
    with pytest.raises(UserError, match="named: h100-sxm-bf16, a100-sxm-bf16"):
        report(cpu, "--out", tmp_path / "x", "--device-profile", "h200-imaginary")


def test_report_flag_errors_name_the_flag_and_what_is_valid(tmp_path, capsys):
    missing = tmp_path / "nowhere.csv"  # the flags are checked before anything is read
    for argv, message in (
        (["--cluster", "nvlink9"], r"--cluster 'nvlink9': expected INTRA\[\+\[K x\]NET\] with INTRA one of "
                                   r"pcie4, nvlink3, nvlink4 and NET one of net100, net400"),
        (["--cluster", "nvlink4+0xnet400"], "K ≥ 1 NICs per node"),
        (["--overlap", "2"], r"--overlap 2.0: a fraction from 0 \(nothing hidden\) to 1"),
        (["--grad-bytes", "0"], "--grad-bytes 0.0: a positive number of bytes"),
        (["--grad-bytes", "nan"], "--grad-bytes nan: a positive number of bytes"),
    ):
        with pytest.raises(UserError, match=message):
            report(missing, "--out", tmp_path / "out", *argv)
    with pytest.raises(SystemExit):
        report(missing, "--out", tmp_path / "out", "--algorithm", "tree")
    assert "--algorithm: invalid choice: 'tree'" in capsys.readouterr().err


def test_the_service_shows_the_answers_it_draws_with_the_report(tmp_path):
    root = tmp_path / "results"
    write_live_sweep(root / "live")
    for folder in (root / "live" / "trials").iterdir():  # a model whose size can be counted
        frame = pd.read_csv(folder / "records.csv")
        # measured on GPUs: their own timings may go next to GPU links (CPU records need a profile)
        (folder / "records.csv").write_text(frame.assign(model="tiny", device="cuda").to_csv(index=False))
    client = TestClient(create_app([str(root)]), base_url="http://127.0.0.1:8300")
    figures = client.get("/api/studies/0:live/figures").json()
    by_key = {s["key"]: s for s in figures["sections"]}
    assert set(ANSWERS) <= set(by_key)
    assert by_key["projection"]["figure"]["data"] and by_key["projection"]["skipped"] is None
    # No trial reached F1 80 yet: steps to target say so; the recommendation has no measured row.
    assert by_key["tradeoff"]["skipped"].startswith("no run reached f1 ≥ 80")
    assert by_key["recommendation"]["tables"] == ["recommendation"]
    table = client.get("/api/studies/0:live/tables/recommendation.csv")
    assert table.status_code == 200 and table.text.splitlines()[0].startswith("num_workers,basis,optimizer")


def test_report_of_a_published_steps_to_target_table(tmp_path, capsys):
    table = tmp_path / "points.csv"
    rows = [(b, s * b, f"{b}-{r}", opt) for opt, s_min in (("lamb", 100.0), ("adamw", 200.0))
            for b in (64, 128, 256, 512, 1024, 2048) for r, s in enumerate((s_min + 12800 / b,) * 2)]
    pd.DataFrame(rows, columns=["batch", "samples", "run", "optimizer"]).to_csv(table, index=False)
    out = tmp_path / "out"
    assert report("--steps-to-target", table, "--out", out) == 0
    assert {p.name for p in (out / "tables").iterdir()} == {
        "steps_to_target.csv", "tradeoff_fit.csv", "tradeoff_holdout.csv", "tradeoff_curve.csv"}
    fit = pd.read_csv(out / "tables" / "tradeoff_fit.csv").set_index("optimizer")
    assert fit.loc["lamb", "b_crit"] == pytest.approx(128) and fit.loc["adamw", "b_crit"] == pytest.approx(64)
    assert 'id="figure-tradeoff"' in (out / "dashboard.html").read_text(encoding="utf-8")
    with pytest.raises(UserError, match="drop RESULTS, --target: the table gives the steps to its own target"):
        report(table, "--steps-to-target", table, "--out", tmp_path / "x", "--target", 40)
    with pytest.raises(UserError, match="give RESULTS"):
        report("--out", tmp_path / "y")
