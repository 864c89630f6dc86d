"""End to end on a real local Ray: the sweep's concurrency limit, and an ASHA sweep per worker
count on S3 whose driver is killed and resumed."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import files_under, tiny_job_data
from scaling_study.storage import Loc, read_csv
from scaling_study.tune.retention import checkpoint_folders

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]


def tiny_base(tmp_path, synth_dir, steps=12, every=4):
    job = tiny_job_data(synth_dir, name="base", scaling={"num_workers": 1},
                        data={"max_eval_examples": 16},
                        train={"global_batch": None, "grad_accum": 1, "steps": steps},
                        eval={"every_steps": every, "target": {"metric": "loss", "value": 0.1}})
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def write_space(tmp_path, base, **spec):
    space = {"name": "s", "base": str(base), "output": {"dir": str(tmp_path / "sweeps")},
             "search": {"algorithm": "grid"}, "max_concurrent_trials": 1, "failure": {"max_failures": 0}, **spec}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def _sweep_cmd(space, *extra):
    return [sys.executable, "-m", "scaling_study.cli", "sweep", str(space), *extra]


def _wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# On a bucket by default (Tune's experiment state reaches it in the background, ours at each
# write); `pytest --extended` runs the same on a local folder (after changes to storage or to how
# Tune's state is synced).
@pytest.mark.timeout(480)  # four trials, a kill and two resumes: 2-3 minutes alone, longer on busy cores
@pytest.mark.parametrize("where", ["s3", pytest.param("local", marks=pytest.mark.extended)])
def test_an_asha_sweep_per_worker_count_resumes_after_its_driver_is_killed(where, tmp_path, synth_dir, request):
    """An ASHA per worker count (scheduler.group_by): each trial competes with the other trial of
    its worker count only. The sweep's driver (and its embedded Ray) is killed in the first trial
    once ASHA's state holds it at a rung; `--resume` says it restores them, continues that trial
    from its checkpoint, and ASHA stops the weaker trial of each worker count at its first rung.
    The tables, ASHA state, Tune state, trials and the one kept checkpoint all land in the sweep's
    folder; resuming the finished sweep runs nothing again."""
    from scaling_study.results.records import load_results
    from scaling_study.tune.sweep import run_sweep, summary

    # An evaluation (and a checkpoint: ~50 MB for the tiny BERT and LAMB's state) every 8 steps: 32
    # samples on 1 worker, 64 on 2. Rungs at 32, 64 and 128 samples; a 2-worker trial reaches
    # max_t at its step 24.
    base = tiny_base(tmp_path, synth_dir, steps=48, every=8)
    out_dir = f"{request.getfixturevalue('s3')}/kill" if where == "s3" else str(tmp_path / "sweeps")
    space = write_space(
        tmp_path, base, output={"dir": out_dir},
        parameters={"scaling.num_workers": {"distribution": "grid", "values": [1, 2]},
                    "optimizer.lr": {"distribution": "grid", "values": [0.02, 1.0e-7]}},
        scheduler={"name": "asha", "metric": "loss", "mode": "min", "time_attr": "samples",
                   "grace_period": 32, "reduction_factor": 2, "max_t": 192, "group_by": ["scaling.num_workers"]})
    sweep_dir = Loc(out_dir) / "s"

    def trial_records() -> dict:
        found = {d.name: d / "records.csv" for d in (sweep_dir / "trials").subdirs()}
        return {name: read_csv(f) for name, f in sorted(found.items()) if f.is_file()}

    def rungs() -> dict:  # {group: {milestone: {trial: value}}}, ASHA's state as the driver saved it
        state = sweep_dir / "asha_state.json"
        groups = json.loads(state.read_text())["groups"] if state.is_file() else {}
        return {label: {milestone: recorded for milestone, recorded in group["brackets"][0]}
                for label, group in groups.items()}

    # With the S3 endpoint and keys when `s3` set them; run from tmp_path, where anything written
    # to a local folder by mistake would land.
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(_sweep_cmd(space), cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def first_trial_at_a_rung():  # as the sweep's driver saved it, not only in the trial's records
            return any(any(group.values()) for group in rungs().values())
        _wait_for(first_trial_at_a_rung, 300, "ASHA's decision on the first trial's first evaluation")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = trial_records()

    out = subprocess.run(_sweep_cmd(space, "--resume"), cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600, start_new_session=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "restoring ASHA rungs" in out.stdout + out.stderr
    trials = read_csv(sweep_dir / "trials.csv").set_index("trial_id")
    records = read_csv(sweep_dir / "records.csv")
    assert len(trials) == 4 and set(trials["status"]) <= {"DONE", "STOPPED"}, trials["status"]
    after = trial_records()
    (first, rows_before), = before.items()
    assert rows_before["step"].max() < 48, "the first trial had finished before the kill"
    assert trials.loc[first, ["hp.scaling.num_workers", "hp.optimizer.lr"]].tolist() == [1, 0.02]
    for rows_after in after.values():
        assert rows_after["step"].is_unique and rows_after["step"].is_monotonic_increasing
        assert rows_after["train_time_s"].is_monotonic_increasing
    # What was recorded before the kill stands; the resumed trial continues after it, to the end.
    pd.testing.assert_frame_equal(after[first].iloc[: len(rows_before)], rows_before)
    assert after[first]["step"].max() == 48 and not trials.loc[first, "stopped_early"]
    # Each worker count's weak trial falls below its strong one at its first evaluation (step 8: 32
    # samples on 1 worker, 64 on 2): its ASHA stops it there. The stop reaches the trial
    # asynchronously, so it may record an evaluation or two more before it ends, never its last.
    by_workers = trials.groupby("hp.scaling.num_workers")
    for workers, group in by_workers:
        weak = group.index[group["hp.optimizer.lr"] == 1.0e-7].item()
        assert after[weak]["step"].min() == 8 and after[weak]["step"].max() < 48 // workers, list(after[weak]["step"])
        assert trials.loc[weak, "stopped_early"]
        strong = group.index[group["hp.optimizer.lr"] == 0.02].item()
        assert after[strong]["samples"].max() == 192  # max_t: the last step on 1 worker, step 24 on 2
    assert set(records["num_workers"]) == {1, 2} and {"hp.scaling.num_workers", "hp.optimizer.lr"} <= set(records.columns)
    assert records.loc[records["loss"].idxmin(), "hp.optimizer.lr"] == 0.02
    # ASHA's rungs as the resumed sweep left them: each group's first rung holds its own two trials
    # (with the weak 1-worker trial's result recorded after the resume: Tune's folder is its own,
    # layout.TUNE_DIR, so its uploads do not put back the copy it read at the resume).
    assert json.loads((sweep_dir / "asha_state.json").read_text())["time_attr"] == "samples"
    assert {label: set(r[32]) for label, r in rungs().items()} == {
        f"scaling.num_workers={workers}": set(group.index) for workers, group in by_workers}
    files = files_under(sweep_dir)
    assert {"records.csv", "trials.csv", "asha_state.json", "tune/tuner.pkl"} <= files
    assert not [f for f in files if "/" not in f and f.endswith(".pkl")], "Tune's files stay in its folder"
    for trial_id in trials.index:
        assert {f"trials/{trial_id}/{name}" for name in ("job.yaml", "params.json", "records.csv")} <= files
    assert len(load_results([str(sweep_dir)]).records) == len(records)
    assert not (tmp_path / "sweeps").exists() or where == "local"

    # Resuming the finished sweep runs nothing again; the resumed sweep (its retention callback
    # restored with it) kept only the best trial's last checkpoint (output.keep_checkpoints: best).
    # No trial runs: this process's shared Ray, started only now (this test runs first in its module,
    # so no idle Ray sat beside the sweep's drivers); the next test keeps it.
    request.getfixturevalue("local_ray")
    _, grid, tables = run_sweep(str(space), resume=True)
    assert sorted(read_csv(tables["trials"])["trial_id"]) == sorted(trials.index)
    assert len(read_csv(tables["records"])) == len(records)
    best = tables["best"]["trial_id"]
    kept = {d.name: [c.name for c in checkpoint_folders(d)] for d in (sweep_dir / "trials").subdirs()}
    last = {r.metrics["trial_id"]: Loc(r.metrics["checkpoint_path"]).name for r in grid}
    assert {t: names for t, names in kept.items() if names} == {best: [last[best]]}
    assert f"kept checkpoints: trials/{best}/{last[best]}\n" in summary(sweep_dir, grid, tables)


def test_the_sweep_runs_at_most_max_concurrent_trials_at_once(tmp_path, synth_dir, local_ray):
    """Tune ignores TuneConfig.max_concurrent_trials for a search algorithm passed in; the space's
    limit must hold anyway (every trial past it would start a TorchTrainer controller that waits)."""
    from ray import tune

    from scaling_study.tune.space import load_space

    space = load_space(write_space(tmp_path, tiny_base(tmp_path, synth_dir), max_concurrent_trials=2,
                                   parameters={"optimizer.lr": {"distribution": "grid", "values": [1, 2, 3, 4, 5]}}))

    def trainable(config):
        start = time.time()
        time.sleep(1.5)
        tune.report({"start": start, "end": time.time(), "loss": 1.0})

    tuner = tune.Tuner(tune.with_resources(trainable, {"CPU": 0, "memory": 2**20}), param_space=space.param_space(),
                       tune_config=space.tune_config(str(tmp_path / "asha.json")),
                       run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0))
    spans = [(r.metrics["start"], r.metrics["end"]) for r in tuner.fit()]
    assert len(spans) == 5
    overlap = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert overlap == 2
