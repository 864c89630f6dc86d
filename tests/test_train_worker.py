"""What a worker is told and what it plans: the typed worker config survives Ray's dict, and
evaluations fall on the schedule plus, with `eval.at_end`, the last step."""
from pathlib import Path

from conftest import tiny_job_data
from scaling_study.config import EvalConfig, job_from_dict
from scaling_study.train.setup import evaluation_steps
from scaling_study.train.tasks import DataFiles
from scaling_study.train.worker_config import WorkerConfig


def phases(synth_dir):
    job = job_from_dict(tiny_job_data(synth_dir, train={"steps": None, "phases": [
        {"steps": 6, "global_batch": 8}, {"steps": 4, "global_batch": 4, "per_worker_batch": 2}]}))
    return job.phases()


def test_evaluations_fall_on_the_schedule_and_on_the_last_step_unless_at_end_is_off(synth_dir):
    ps = phases(synth_dir)
    assert evaluation_steps(EvalConfig(every_steps=4), ps) == {4, 8, 10}
    assert evaluation_steps(EvalConfig(every_steps=4, at_end=False), ps) == {4, 8}
    assert evaluation_steps(EvalConfig(every_steps=5), ps) == {5, 10}  # the last step once
    # Samples after each step: 8, 16, ..., 48, then 52, 56, 60, 64: multiples of 20 crossed at 3, 5, 9.
    assert evaluation_steps(EvalConfig(every_steps=None, every_samples=20), ps) == {3, 5, 9, 10}
    assert evaluation_steps(EvalConfig(every_steps=None, every_samples=20, at_end=False), ps) == {3, 5, 9}


def test_the_worker_config_survives_the_dict_ray_passes(synth_dir, tmp_path):
    job = job_from_dict(tiny_job_data(synth_dir, scaling={"num_workers": 0}, output={"dir": str(tmp_path)}))
    cfg = WorkerConfig(job=job, files=DataFiles([Path("/d/train.json")], [Path("/d/dev.json")]), trial_id="t1",
                       log_every=3, verbose=False, before_step=print)
    again = WorkerConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert again.local and again.run_id == "tiny" and str(again.run_dir) == str(tmp_path / "tiny")
