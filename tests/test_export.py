"""Export: choosing the best trial of a sweep, rescaling its job, and the YAML round trip.

The sweep directories are built the way `scaling-study sweep` leaves them: each trial's job in
trials/<id>/job.yaml (`dump_job`), its params.json and records.csv; the sweep's records.csv
gathered by `tune.gather.gather_records`; trials.csv with each trial's status.
"""
import argparse
import dataclasses
import json
import math

import pandas as pd
import pytest

from scaling_study.config import dump_job, job_from_dict, load_job
from scaling_study.errors import UserError
from scaling_study.reports import cli as reports_cli
from scaling_study.reports.export import export, rescale, select_trial
from scaling_study.results.records import load_results
from scaling_study.results.targets import make_target
from scaling_study.train.records import COLUMNS
from scaling_study.tune.gather import gather_records


def job_data(**sections) -> dict:
    data = {
        "name": "base", "task": "squad",
        "model": {"name": "tiny", "max_seq_length": 64},
        "data": {"synth": {"train": 100, "dev": 20}, "dir": "data/synth", "doc_stride": 32,
                 "max_query_length": 16},
        "optimizer": {"name": "lamb", "lr": 4e-3},
        "schedule": {"name": "poly", "lr_rule": "none"},
        "scaling": {"num_workers": 2},
        "train": {"per_worker_batch": 8, "global_batch": 32, "steps": 40},
        "eval": {"every_steps": 10, "target": {"metric": "f1", "value": 80.0}},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


def make_job(**sections):
    return job_from_dict(job_data(**sections))


# Three trials. t0 has the best F1 (86) but is slow; t1 reaches F1 80 first (10 s) and has the
# lowest loss; t2 has the highest F1 of all but ended in ERROR, so it is never chosen.
TRIALS = {
    "t0": dict(params={"optimizer.lr": 2e-3, "scaling.num_workers": 1}, status="DONE",
               f1=[40.0, 70.0, 86.0], loss=[2.0, 1.2, 0.9], times=[10.0, 20.0, 30.0]),
    "t1": dict(params={"optimizer.lr": 1e-3, "scaling.num_workers": 2}, status="DONE",
               f1=[50.0, 82.0, 84.0], loss=[1.5, 0.8, 0.6], times=[5.0, 10.0, 15.0]),
    "t2": dict(params={"optimizer.lr": 8e-3, "scaling.num_workers": 2}, status="ERROR",
               f1=[60.0, 95.0], loss=[1.0, 0.5], times=[4.0, 8.0]),
}


def trial_records(trial_id: str, job, f1, loss, times) -> pd.DataFrame:
    """Evaluation rows of one trial, with the contract's columns (`train.records.COLUMNS`)."""
    phase = job.phases()[0]
    rows = [{**dict.fromkeys(COLUMNS, math.nan),
             "run_id": trial_id, "trial_id": trial_id, "task": job.task, "model": job.model.name,
             "optimizer": job.optimizer.name, "lr_rule": job.schedule.lr_rule,
             "per_worker_batch": phase.per_worker_batch, "grad_accum": phase.grad_accum,
             "num_workers": job.data_workers, "global_batch": phase.global_batch,
             "scaling_mode": job.train.scaling_mode, "seed": 0, "device": "cpu", "phase": 1,
             "step": 10 * (i + 1), "samples": 10 * (i + 1) * phase.global_batch,
             "train_time_s": t, "wall_time_s": t + 1.0, "loss": lo, "f1": f, "em": f - 5.0,
             "target_metric": "f1", "target_value": 80.0, "target_reached": f >= 80.0}
            for i, (f, lo, t) in enumerate(zip(f1, loss, times))]
    return pd.DataFrame(rows, columns=COLUMNS)


def write_sweep(root, trials=TRIALS, base=None, name="lrsweep"):
    """A sweep directory as `scaling-study sweep` writes it; returns its path."""
    sweep = root / name
    for trial_id, t in trials.items():
        data = job_data(**(base or {}))
        for key, value in t["params"].items():
            section, field = key.split(".")
            data[section] = {**data[section], field: value}
        data["train"] = {**data["train"], "global_batch": data["train"]["per_worker_batch"] * data["scaling"]["num_workers"] * 2}
        data.update(name=trial_id, output={"dir": str(sweep / "trials")})
        job = job_from_dict(data)
        folder = sweep / "trials" / trial_id
        dump_job(job, folder / "job.yaml", header=f"Trial {trial_id} of sweep {name}")
        (folder / "params.json").write_text(json.dumps({"trial_id": trial_id, "params": t["params"]}))
        trial_records(trial_id, job, t["f1"], t["loss"], t["times"]).to_csv(folder / "records.csv", index=False)
    gather_records(sweep).to_csv(sweep / "records.csv", index=False)
    pd.DataFrame([{"trial_id": k, "status": t["status"], "stopped_early": False,
                   **{f"hp.{p}": v for p, v in t["params"].items()}} for k, t in trials.items()]
                 ).to_csv(sweep / "trials.csv", index=False)
    return sweep


@pytest.fixture
def sweep(tmp_path):
    return write_sweep(tmp_path)


# --- choosing the trial ----------------------------------------------------------------------

def test_best_by_f1_max_leaves_out_errored_trials(sweep):
    trial_id, row = select_trial(load_results([sweep]), "f1", "max")
    assert trial_id == "t0" and row["best_f1"] == 86.0
    assert row["hp.optimizer.lr"] == 2e-3


def test_best_by_loss_defaults_to_min(sweep):
    assert select_trial(load_results([sweep]), "loss")[0] == "t1"
    assert select_trial(load_results([sweep]), "loss", "max")[0] == "t0"  # max loss: t0's 2.0


def test_time_to_target_uses_the_records_target_or_the_one_given(sweep):
    results = load_results([sweep])
    trial_id, row = select_trial(results, "time_to_target")  # records: f1 >= 80
    assert (trial_id, row["train_time_s"], row["step"]) == ("t1", 10.0, 20)
    assert select_trial(results, "time_to_target", target=make_target("f1", 85.0))[0] == "t0"
    with pytest.raises(UserError, match=r"no run reached f1 ≥ 99.*t0.*86"):
        select_trial(results, "time_to_target", target=make_target("f1", 99.0))


def test_unknown_metric_lists_the_metrics_the_records_have(sweep):
    with pytest.raises(UserError, match=r"records.csv: --metric 'mlm_acc'.*valid here: f1, em, loss, time_to_target"):
        select_trial(load_results([sweep]), "mlm_acc")


def test_time_to_target_without_any_target_says_how_to_give_one(tmp_path):
    sweep = write_sweep(tmp_path)
    records = pd.read_csv(sweep / "records.csv")
    records.assign(target_metric="", target_value=math.nan).to_csv(sweep / "records.csv", index=False)
    with pytest.raises(UserError, match="carry no target.*--target-metric f1 --target 88"):
        export(sweep, "time_to_target", None, tmp_path / "best.yaml")
    # --target alone needs a metric to go with it, and the records name none
    with pytest.raises(UserError, match="--target 80: .*add --target-metric"):
        export(sweep, "time_to_target", None, tmp_path / "best.yaml", target=80.0)
    done = export(sweep, "time_to_target", None, tmp_path / "best.yaml", target_metric="f1", target=85.0)
    assert done.trial_id == "t0"


# --- export and the round trip -----------------------------------------------------------------

def test_export_round_trip_equals_the_trials_job(sweep, tmp_path):
    out = tmp_path / "jobs" / "best.yaml"
    done = export(sweep, "f1", "max", out)
    trial = load_job(sweep / "trials" / "t0" / "job.yaml")
    exported = load_job(out)
    # Same job, under a new name and writing to runs/ rather than into the sweep's trials folder.
    assert exported == dataclasses.replace(trial, name="best_lrsweep",
                                           output=dataclasses.replace(trial.output, dir="runs"))
    assert (done.path, done.trial_id, done.replaced) == (out, "t0", False)
    assert done.changes == ("name: t0 -> best_lrsweep", f"output.dir: {sweep / 'trials'} -> runs")
    assert "left out 1 trial(s) that ended in ERROR: t2" in done.notes
    header = out.read_text().split("\nname:")[0]
    assert f"# Best trial of {sweep} by f1: t0, best f1 86 (max)." in header
    assert "optimizer.lr=0.002, scaling.num_workers=1" in header
    assert f"# From {sweep / 'trials' / 't0' / 'job.yaml'}" in header


def test_export_replaces_an_existing_file_and_leaves_no_temporary(sweep, tmp_path):
    out = tmp_path / "best.yaml"
    out.write_text("old")
    done = export(sweep, "loss", None, out, name="chosen")
    assert done.replaced and load_job(out).name == "chosen"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.yaml", "lrsweep"]


def test_a_missing_job_file_names_it(sweep, tmp_path):
    (sweep / "trials" / "t0" / "job.yaml").unlink()
    with pytest.raises(UserError, match=r"trials/t0/job.yaml: no such file.*keeps trials/<trial_id>/job.yaml"):
        export(sweep, "f1", "max", tmp_path / "best.yaml")
    assert not (tmp_path / "best.yaml").exists()


def test_a_job_file_of_another_run_is_refused(sweep, tmp_path):
    other = (sweep / "trials" / "t1" / "job.yaml").read_text()
    (sweep / "trials" / "t0" / "job.yaml").write_text(other)
    with pytest.raises(UserError, match=r"t0/job.yaml: holds the job of 't1'.* are of 't0'"):
        export(sweep, "f1", "max", tmp_path / "best.yaml")


def test_a_run_dir_exports_its_own_job(sweep, tmp_path):
    run = sweep / "trials" / "t1"  # a trial's folder is a run dir: records.csv + job.yaml
    done = export(run, "f1", None, tmp_path / "best.yaml")
    job = load_job(tmp_path / "best.yaml")
    assert (done.trial_id, job.name, job.output.dir) == ("t1", "best_t1", "runs")


def run_cli(argv: list[str]) -> int:
    """`scaling-study ARGV` with only the reports commands registered (the full CLI also imports
    every other command's module: seconds spent on torch for nothing here)."""
    parser = argparse.ArgumentParser(prog="scaling-study")
    reports_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_prints_the_trial_the_changes_and_the_file(sweep, tmp_path, capsys):
    out = tmp_path / "best.yaml"
    argv = ["export", str(sweep), "--metric", "f1", "--out", str(out), "--workers", "4"]
    assert run_cli(argv) == 0
    printed = capsys.readouterr().out
    assert f"trial:   t0 ({sweep / 'trials' / 't0' / 'job.yaml'})" in printed
    assert "result:  best f1 86 (max)" in printed
    assert "scaling.num_workers: 1 -> 4" in printed and "train.global_batch: 16 -> 64" in printed
    assert f"wrote:   {out}" in printed
    assert load_job(out).name == "best_lrsweep_4w"
    with pytest.raises(UserError, match="give --workers N with it"):
        run_cli(["export", str(sweep), "--metric", "f1", "--out", str(out), "--scaling", "strong"])
    with pytest.raises(UserError, match="apply to --metric time_to_target, not --metric f1"):
        run_cli(["export", str(sweep), "--metric", "f1", "--out", str(out), "--target", "80"])


# --- rescaling -----------------------------------------------------------------------------

def batches(job):
    return [(p.per_worker_batch, p.grad_accum, p.global_batch) for p in job.phases()]


def test_weak_keeps_the_per_worker_batch_and_accumulation():
    job = make_job()  # 8 x 2 workers x 2 = 32
    new, changes = rescale(job, 4)
    assert (new.scaling.num_workers, new.train.scaling_mode, batches(new)) == (4, "weak", [(8, 2, 64)])
    assert changes == ["scaling.num_workers: 2 -> 4", "train.scaling_mode: (unset) -> weak",
                       "train.global_batch: 32 -> 64",
                       "peak LR: unchanged at 0.004 (schedule.lr_rule is none)"]
    assert new.optimizer == job.optimizer and new.schedule == job.schedule


def test_strong_keeps_the_global_batch_and_shrinks_the_micro_batch_where_it_must():
    job = make_job(train={"scaling_mode": "strong"})  # the job's own mode is the default
    new, changes = rescale(job, 4)
    assert batches(new) == [(8, 1, 32)]
    assert changes == ["scaling.num_workers: 2 -> 4", "train.grad_accum: 2 -> 1",
                       "peak LR: unchanged (the global batch is unchanged)"]
    new, changes = rescale(job, 8)
    assert batches(new) == [(4, 1, 32)]
    assert ("train.per_worker_batch: 8 -> 4 (the largest micro-batch that splits the global batch 32 "
            "over 8 workers)") in changes
    assert batches(rescale(job, 1)[0]) == [(8, 4, 32)]


def test_strong_refuses_a_worker_count_that_cannot_keep_the_global_batch():
    with pytest.raises(UserError, match=r"--workers 3 --scaling strong: the global batch \(32\) cannot be "
                                        r"split evenly over 3 workers; valid worker counts: 1, 2, 4, 8, 16, 32"):
        rescale(make_job(), 3, "strong")
    with pytest.raises(UserError, match="must be >= 1"):
        rescale(make_job(), -1)


def test_zero_workers_is_one_rank_in_the_driver():
    new, changes = rescale(make_job(), 0, "strong")
    assert (new.scaling.num_workers, batches(new)) == (0, [(8, 4, 32)])
    assert changes[:2] == ["scaling.num_workers: 2 -> 0", "train.scaling_mode: (unset) -> strong"]


def test_the_same_worker_count_changes_nothing():
    job = make_job()
    assert rescale(job, 2, "strong") == (job, [])


def test_every_phase_of_a_two_phase_job_is_rescaled():
    job = make_job(task="mlm", eval={"target": {"metric": "mlm_acc", "value": 0.2}},
                   train={"global_batch": None, "steps": None, "per_worker_batch": 16, "phases": [
                       {"seq_len": 64, "global_batch": 64, "steps": 6},
                       {"seq_len": 128, "per_worker_batch": 4, "global_batch": 32, "steps": 2, "lr": 2e-3}]})
    assert batches(job) == [(16, 2, 64), (4, 4, 32)]
    weak, changes = rescale(job, 4, "weak")
    assert batches(weak) == [(16, 2, 128), (4, 4, 64)]
    assert "train.phases[1].global_batch: 32 -> 64" in changes
    assert changes[-1] == "peak LR of phase 2: unchanged at 0.002 (schedule.lr_rule is none)"
    assert batches(rescale(job, 4, "strong")[0]) == [(16, 1, 64), (4, 2, 32)]
    with pytest.raises(UserError, match=r"global batch \(32, 64\).*valid worker counts: 1, 2, 4, 8, 16, 32"):
        rescale(job, 64, "strong")


@pytest.mark.parametrize("rule", ["sqrt", "linear"])
def test_the_peak_lr_follows_the_rule_from_the_reference_batch(rule):
    factor = {"sqrt": math.sqrt(2), "linear": 2.0}[rule]  # the global batch doubles: 32 -> 64
    job = make_job(schedule={"lr_rule": rule, "reference_batch": 32})
    new, changes = rescale(job, 4, "weak")
    assert new.optimizer.lr == 4e-3  # the LR at the reference batch stays; the rule moves the peak
    assert new.peak_lr(new.phases()[0]) == pytest.approx(4e-3 * factor)
    assert changes[-1] == f"peak LR: 0.004 -> {4e-3 * factor:.3g} ({rule} rule from reference batch 32)"


def test_without_a_reference_batch_the_lr_stays_and_says_why():
    new, changes = rescale(make_job(schedule={"lr_rule": "sqrt"}), 4, "weak")
    assert changes[-1].startswith("peak LR: unchanged at 0.004 (no schedule.reference_batch")


# --- the exported job runs -----------------------------------------------------------------

@pytest.mark.ray
def test_the_exported_job_runs_as_it_is(tmp_path, synth_dir, local_ray, monkeypatch):
    from scaling_study.train.driver import run_job

    base = {"data": {"synth": None, "train": str(synth_dir / "train.json"), "dev": str(synth_dir / "dev.json"),
                     "max_eval_examples": 16},
            "schedule": {"lr_rule": "sqrt", "reference_batch": 16},
            "train": {"per_worker_batch": 4, "steps": 2}, "eval": {"every_steps": 2}}
    sweep = write_sweep(tmp_path, base=base)
    monkeypatch.chdir(tmp_path)  # the exported job runs in ./runs
    # t1 (best loss) ran 4 x 2 workers x 2; on one worker, strong scaling accumulates 4 micro-batches.
    done = export(sweep, "loss", None, tmp_path / "best.yaml", workers=1, scaling="strong")
    job = load_job(done.path)
    assert (job.scaling.num_workers, batches(job)) == (1, [(4, 4, 16)])
    result = run_job(job, verbose=False)
    records = pd.read_csv(result.run_dir / "records.csv")
    assert result.run_dir == tmp_path / "runs" / "best_lrsweep_1w"
    assert list(records["step"]) == [2] and list(records["global_batch"]) == [16]
    assert list(records["num_workers"]) == [1] and list(records["grad_accum"]) == [4]
    assert records["peak_lr"].iloc[0] == pytest.approx(job.peak_lr(job.phases()[0]))
