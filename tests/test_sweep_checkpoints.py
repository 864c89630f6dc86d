"""A trial's job comes from the space the sweep checked once, not from the space's file."""
import pickle
from types import SimpleNamespace

import pytest
import yaml


def write_space(tmp_path, **output):
    base = {"name": "base", "task": "squad", "data": {"synth": {}}, "scaling": {"num_workers": 1},
            "train": {"per_worker_batch": 4, "global_batch": 8, "steps": 4}, "eval": {"every_steps": 2}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    space = {"name": "s", "base": "base.yaml", "output": {"dir": str(tmp_path / "sweeps"), **output},
             "parameters": {"optimizer.lr": {"distribution": "grid", "values": [0.01, 0.02]}}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    return tmp_path / "space.yaml"


@pytest.fixture
def fake_trial_session(monkeypatch):
    """`trial_driver` outside Tune: a trial id, no Ray Train run; returns the jobs it would fit."""
    import ray.tune
    import ray.tune.integration.ray_train

    from scaling_study.train import driver, tasks

    fitted = []
    monkeypatch.setattr(ray.tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: "t1"))
    monkeypatch.setattr(ray.tune.integration.ray_train, "TuneReportCallback", lambda: None)
    monkeypatch.setattr(tasks, "resolve_data_files", lambda job, generate: None)
    fit = lambda: SimpleNamespace(error=None, metrics={"finished": True})
    monkeypatch.setattr(driver, "build_trainer", lambda job, *a, **k: fitted.append(job) or SimpleNamespace(fit=fit))
    return fitted


def test_a_trial_runs_the_job_of_the_handed_space_without_its_files(tmp_path, fake_trial_session):
    """The sweep hands each trial the checked space (pickled by tune.with_parameters): the trial's
    node need not have the search-space or base-job file, and nothing is loaded again."""
    from scaling_study.config import load_job
    from scaling_study.tune.space import load_space
    from scaling_study.tune.sweep import TRIALS_DIR, trial_driver, trial_job

    space = load_space(write_space(tmp_path))
    sweep_dir = tmp_path / "sweeps" / "s"
    expected = trial_job(space, {"optimizer.lr": 0.02}, "t1", str(sweep_dir), str(tmp_path))
    shipped = pickle.dumps(space)
    for name in ("space.yaml", "base.yaml"):
        (tmp_path / name).unlink()
    trial_driver({"optimizer.lr": 0.02}, space=pickle.loads(shipped), sweep_dir=str(sweep_dir), cwd=str(tmp_path))
    (job,) = fake_trial_session
    assert job == expected
    assert job.name == "t1" and job.optimizer.lr == 0.02 and job.output.dir == str(sweep_dir / TRIALS_DIR)
    assert load_job(sweep_dir / TRIALS_DIR / "t1" / "job.yaml") == job
    assert (sweep_dir / TRIALS_DIR / "t1" / "params.json").is_file()
