"""`export --recommend --workers N`: the recommendation for N workers as a job that runs.

A LAMB batch sweep on 2 GPU workers whose steps to F1 80 follow S(B) = 100 (1 + 32/B) exactly
(batches 8, 16 and 128: 500, 300 and 125 steps; evaluated every 25, so each crossing lies in the
25 steps before), with 1 ms of compute per sample and the best LR growing as √B. Written the way `scaling-study sweep` leaves a sweep (trials/<id>/job.yaml,
gathered records.csv with the swept values).
"""
import json
import math

import pandas as pd
import pytest

from scaling_study.config import dump_job, job_from_dict, load_job
from scaling_study.errors import UserError
from scaling_study.reports.recommended import export_recommended
from scaling_study.train.records import COLUMNS
from scaling_study.tune.gather import gather_records
from test_export import job_data, run_cli

STEPS, EVERY = 600, 25
TRIALS = {"b8": (4, 500), "b16": (8, 300), "b128": (64, 125)}  # per-worker batch, steps to F1 80


def lr_of(batch: int) -> float:
    return 1e-3 * math.sqrt(batch / 8)


def rows_of(job, reach: int) -> pd.DataFrame:
    phase = job.phases()[0]
    step_s = 1e-3 * phase.per_worker_batch
    rows = [{**dict.fromkeys(COLUMNS, math.nan),
             "run_id": job.name, "trial_id": job.name, "task": "squad", "model": "tiny",
             "optimizer": "lamb", "peak_lr": job.optimizer.lr, "lr_rule": "none",
             "per_worker_batch": phase.per_worker_batch, "grad_accum": 1, "num_workers": 2,
             "global_batch": phase.global_batch, "seed": 0, "device": "cuda", "phase": 1, "step": step,
             "samples": step * phase.global_batch, "train_time_s": step * step_s, "wall_time_s": step * step_s + 1,
             "f1": min(92.0, 80.0 * step / reach), "time_compute_s": step_s, "time_allreduce_s": 0.0,
             "time_optimizer_s": 0.0, "target_metric": "f1", "target_value": 80.0, "target_reached": step >= reach}
            for step in range(EVERY, STEPS + 1, EVERY)]
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture
def sweep(tmp_path):
    sweep = tmp_path / "bsweep"
    for trial_id, (pwb, reach) in TRIALS.items():
        batch = 2 * pwb
        params = {"optimizer.lr": lr_of(batch), "train.per_worker_batch": pwb}
        data = job_data(name=trial_id, output={"dir": str(sweep / "trials")}, optimizer={"lr": lr_of(batch)},
                        train={"per_worker_batch": pwb, "global_batch": batch, "steps": STEPS})
        job = job_from_dict(data)
        folder = sweep / "trials" / trial_id
        dump_job(job, folder / "job.yaml")
        (folder / "params.json").write_text(json.dumps({"trial_id": trial_id, "params": params}))
        rows_of(job, reach).to_csv(folder / "records.csv", index=False)
    gather_records(sweep).to_csv(sweep / "records.csv", index=False)
    return sweep


def test_measured_where_a_run_at_n_reached_the_target_exports_it_as_it_ran(sweep, tmp_path):
    out = tmp_path / "rec2.yaml"
    done = export_recommended(sweep, out, workers=2)
    # Fastest to F1 80 on 2 workers: batch 8 (500 steps × 4 ms) beats 16 (300 × 8 ms) and 128.
    assert done.trial_id == "b8" and done.result.startswith("lamb at global batch 8 (4 per worker × 1")
    trial, exported = load_job(sweep / "trials" / "b8" / "job.yaml"), load_job(out)
    assert exported.name == "recommended_bsweep_2w" and exported.output.dir == "runs"
    assert (exported.optimizer, exported.schedule, exported.train, exported.scaling) == \
        (trial.optimizer, trial.schedule, trial.train, trial.scaling)
    assert "Recommendation for 2 workers" in out.read_text() and "(measured)" in out.read_text()


def test_projected_elsewhere_applies_the_recommendation_to_its_source_runs_job(sweep, tmp_path):
    out = tmp_path / "rec32.yaml"
    done = export_recommended(sweep, out, workers=32)
    job = load_job(out)
    # Compute is all there is: the smallest batch of 32 workers wins, per-worker batch 1, B = 32.
    # Its LR comes from batch 16, the nearest measured, moved by √2 (the sweep's best LRs follow √B).
    phase = job.phases()[0]
    assert (job.scaling.num_workers, phase.per_worker_batch, phase.grad_accum, phase.global_batch) == (32, 1, 1, 32)
    assert job.optimizer.lr == pytest.approx(lr_of(16) * math.sqrt(2))
    assert job.schedule.lr_rule == "none" and job.peak_lr(phase) == job.optimizer.lr
    # The fit to the crossings' midpoints is S = 87.5 + 3200/B: 187.5 steps at B = 32. b16 crossed
    # F1 80 between steps 275 and 300 of 600 (midpoint 287.5): the run is 600 × 187.5/287.5 long.
    assert job.train.steps == math.ceil(600 * 187.5 / 287.5) and done.trial_id == "b16"
    assert any(line.startswith("train.steps: 600 -> 392 (b16 crossed f1 ≥ 80 between steps 275 and 300")
               for line in done.changes)
    assert any("sqrt rule" in line for line in done.changes)
    assert any("nvlink4+8xnet400" in note and "'tiny'" in note for note in done.notes)
    assert load_job(out) == job  # what was written runs as it is


def test_no_recommendation_says_why(sweep, tmp_path):
    records = pd.read_csv(sweep / "records.csv")
    records.assign(device="cpu").to_csv(sweep / "records.csv", index=False)
    with pytest.raises(UserError, match="--recommend --workers 8: no recommendation: lamb: .*measured on cpu.*"
                                        "--device-profile"):
        export_recommended(sweep, tmp_path / "x.yaml", workers=8)
    records.assign(model="bert-base-uncased").to_csv(sweep / "records.csv", index=False)
    with pytest.raises(UserError, match="nothing can be projected: model 'bert-base-uncased'.*--grad-bytes"):
        export_recommended(sweep, tmp_path / "x.yaml", workers=8)
    assert not (tmp_path / "x.yaml").exists()


def test_a_phased_job_is_refused(sweep, tmp_path):
    data = job_data(name="b16", output={"dir": str(sweep / "trials")}, optimizer={"lr": lr_of(16)},
                    train={"per_worker_batch": 8, "global_batch": 16, "steps": None,
                           "phases": [{"steps": 300}, {"steps": 300}]})
    dump_job(job_from_dict(data), sweep / "trials" / "b16" / "job.yaml")
    with pytest.raises(UserError, match=r"b16 has 2 phases \(train.phases\)"):
        export_recommended(sweep, tmp_path / "x.yaml", workers=32)


def test_cli_recommend_and_its_flag_errors(sweep, tmp_path, capsys):
    out = tmp_path / "rec.yaml"
    assert run_cli(["export", str(sweep), "--recommend", "--workers", "32", "--out", str(out),
                    "--grad-bytes", "1e3", "--cluster", "pcie4+net100"]) == 0
    printed = capsys.readouterr().out
    assert "trial:   b16" in printed and "scaling.num_workers: 2 -> 32" in printed
    assert "note:    projected for pcie4+1xnet100 (8/node)" in printed and "--grad-bytes" in printed
    base = ["export", str(sweep), "--out", str(out)]
    for argv, message in (
        (["--recommend"], "--recommend needs --workers N"),
        (["--recommend", "--workers", "8", "--metric", "f1"], "--metric f1: does not apply to --recommend"),
        (["--recommend", "--workers", "8", "--scaling", "weak"], "--scaling weak: does not apply"),
        (["--recommend", "--workers", "0"], "a recommendation is for 1 or more workers"),
        (["--recommend", "--workers", "8", "--cluster", "infiniband"],
         "--cluster 'infiniband': expected INTRA.*pcie4, nvlink3.*net100, net400"),
        (["--recommend", "--workers", "8", "--overlap", "1.5"], "--overlap 1.5: a fraction from 0"),
        (["--recommend", "--workers", "8", "--grad-bytes", "-4"], "--grad-bytes -4.0: a positive number"),
        (["--metric", "f1", "--cluster", "pcie4"], "--cluster applies to --recommend"),
        (["--workers", "8"], "--metric is required: one of f1, .*time_to_target .or --recommend"),
    ):
        with pytest.raises(UserError, match=message):
            run_cli(base + argv)
    with pytest.raises(SystemExit):
        run_cli(base + ["--recommend", "--workers", "8", "--algorithm", "tree"])
    err = capsys.readouterr().err
    assert "--algorithm: invalid choice: 'tree'" in err and "ring" in err and "hierarchical" in err
