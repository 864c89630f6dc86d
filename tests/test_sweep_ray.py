"""End to end on a real local Ray: the sweep's concurrency limit, and resuming a killed sweep with
its ASHA rungs. (An ASHA sweep over worker counts, on S3: tests/test_object_store.py.)"""
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

from conftest import tiny_job_data
from scaling_study.storage import Loc, read_csv
from scaling_study.tune.retention import checkpoint_folders

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]


def tiny_base(tmp_path, synth_dir, steps=12):
    job = tiny_job_data(synth_dir, name="base", scaling={"num_workers": 1},
                        data={"max_eval_examples": 16},
                        train={"global_batch": None, "grad_accum": 1, "steps": steps},
                        eval={"target": {"metric": "loss", "value": 0.1}})
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def write_space(tmp_path, base, **spec):
    space = {"name": "s", "base": str(base), "output": {"dir": str(tmp_path / "sweeps")},
             "search": {"algorithm": "grid"}, "max_concurrent_trials": 1, "failure": {"max_failures": 0}, **spec}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


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


def _sweep_cmd(space, *extra):
    return [sys.executable, "-m", "scaling_study.cli", "sweep", str(space), *extra]


def _wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# The S3 variant repeats the local one against a bucket: the default run keeps the local kill and
# test_object_store's resume of an ASHA sweep from a bucket; `pytest --extended` runs it too
# (after changes to storage or to how Tune's state is synced).
@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.extended)])
def test_resume_after_the_sweep_driver_is_killed(where, tmp_path, synth_dir, request):
    """Kill the sweep's driver (and its embedded Ray) in the first trial, once ASHA's state holds it
    at a rung; `--resume` says it restores them, continues that trial from its checkpoint, and ASHA
    stops the weaker second trial at its first rung. On S3 too: Tune's experiment state reaches
    the bucket in the background, ours at each write."""
    base = tiny_base(tmp_path, synth_dir, steps=60)
    out_dir = f"{request.getfixturevalue('s3')}/kill" if where == "s3" else str(tmp_path / "sweeps")
    # Rungs at 16, 32, 64 and 128 samples: an evaluation every 16 (4 steps of 4).
    space = write_space(
        tmp_path, base, output={"dir": out_dir},
        parameters={"optimizer.lr": {"distribution": "grid", "values": [0.02, 1.0e-7]}},
        scheduler={"name": "asha", "metric": "loss", "mode": "min", "time_attr": "samples",
                   "grace_period": 16, "reduction_factor": 2, "max_t": 240})
    sweep_dir = Loc(out_dir) / "s"

    def trial_records() -> dict:
        found = {d.name: d / "records.csv" for d in (sweep_dir / "trials").subdirs()}
        return {name: read_csv(f) for name, f in sorted(found.items()) if f.is_file()}

    def rungs() -> dict:  # {milestone: {trial: value}} of the one ASHA (no group_by)
        state = sweep_dir / "asha_state.json"
        (group,) = json.loads(state.read_text())["groups"].values() if state.is_file() else [{"brackets": [[]]}]
        return {milestone: recorded for milestone, recorded in group["brackets"][0]}

    env = {**os.environ, "RAY_ADDRESS": ""}  # with the S3 endpoint and keys, when `s3` set them
    proc = subprocess.Popen(_sweep_cmd(space), cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def first_trial_at_a_rung():  # as the sweep's driver saved it, not only in the trial's records
            return any(rungs().values())
        _wait_for(first_trial_at_a_rung, 300, "ASHA's decision on the first trial's first evaluation")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = trial_records()

    out = subprocess.run(_sweep_cmd(space, "--resume"), cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600, start_new_session=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "restoring ASHA rungs" in out.stdout + out.stderr
    trials = read_csv(sweep_dir / "trials.csv")
    assert len(trials) == 2 and (trials["status"] != "ERROR").all()
    after = trial_records()
    (first, rows_before), = before.items()
    assert rows_before["step"].max() < 60, "the first trial had finished before the kill"
    assert first == trials.loc[trials["hp.optimizer.lr"] == 0.02, "trial_id"].item()
    for rows_after in after.values():
        assert rows_after["step"].is_unique and rows_after["step"].is_monotonic_increasing
        assert rows_after["train_time_s"].is_monotonic_increasing
    # What was recorded before the kill stands; the resumed trial continues after it, to the end.
    pd.testing.assert_frame_equal(after[first].iloc[: len(rows_before)], rows_before)
    assert after[first]["step"].max() == 60
    # The second trial's first evaluation (16 samples) falls below the first trial's: ASHA stops it
    # there. The stop reaches the trial asynchronously, so it may record an evaluation or two more
    # before it ends, never its last.
    (second,) = set(after) - {first}
    assert after[second]["step"].min() == 4 and after[second]["step"].max() < 60, list(after[second]["step"])
    assert trials.set_index("trial_id").loc[second, "stopped_early"]
    # ASHA's rungs as the resumed sweep left them, with the second trial's result: Tune's folder is
    # its own (layout.TUNE_DIR), so its uploads do not put back the copy it read at the resume.
    assert set(rungs()[16]) == {first, second}
    assert (sweep_dir / "tune" / "tuner.pkl").is_file() and not (sweep_dir / "tuner.pkl").is_file()
    # The resumed sweep (its retention callback restored with it) keeps the best trial's last checkpoint.
    assert len([c for d in (sweep_dir / "trials").subdirs() for c in checkpoint_folders(d)]) == 1
