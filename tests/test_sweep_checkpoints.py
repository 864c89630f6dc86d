"""What a sweep keeps on disk: the retention callback over fake trial folders (no Ray cluster;
Tune calls the same methods with its own `Trial` objects), locally and on S3; and the space a
trial gets, checked once and needing no file."""
import pickle
from types import SimpleNamespace

import pytest
import yaml

from scaling_study.errors import ConfigError
from scaling_study.layout import FINISHED_MARKER as FINISHED
from scaling_study.storage import Loc
from scaling_study.tune.retention import CheckpointRetention, footprint, human_size, was_finished

RAY_CKPTS = ("checkpoint_2026-01-01_00-00-01.000000", "checkpoint_2026-01-01_00-00-02.000000")
SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's file beside its folders: never ours to drop


def trial_folder(trials: Loc, trial_id: str, checkpoints=RAY_CKPTS) -> Loc:
    """A trial's run folder as Ray Train leaves it: records, a snapshot file, checkpoint folders."""
    run = trials / trial_id
    (run / "records.csv").write_text("step\n4\n")
    (run / SNAPSHOT).write_text("{}")
    for name in checkpoints:
        (run / name / "model.pt").write_bytes(b"x" * 100)
    return run


def trial(trial_id: str, loss: float, run: Loc | None = None):
    """The attributes of a Tune `Trial` the callback reads."""
    last = {"checkpoint_path": (run / RAY_CKPTS[-1]).fs_path} if run is not None else {}
    return SimpleNamespace(trial_id=trial_id, last_result=last, metric_analysis={"loss": {"min": loss, "max": 9.0}})


def kept(run: Loc) -> list[str]:
    return [d.name for d in run.subdirs()]


def complete(callback, trials, t):
    callback.on_trial_complete(iteration=1, trials=trials, trial=t)


@pytest.fixture(params=["local", "s3"])
def trials_dir(request, tmp_path):
    if request.param == "local":
        return Loc(tmp_path / "sweep" / "trials")
    return Loc(f"{request.getfixturevalue('s3')}/{tmp_path.name}/sweep/trials")


def test_best_keeps_the_last_checkpoint_of_the_best_completed_trial_only(trials_dir):
    runs = {t: trial_folder(trials_dir, t) for t in ("a", "b", "c", "d")}
    a, b, c, d = (trial(t, loss, runs[t]) for t, loss in (("a", 0.5), ("b", 0.7), ("c", 0.3), ("d", 0.1)))
    trials = [a, b, c, d]
    cb = CheckpointRetention(str(trials_dir), keep="best", metric="loss", mode="min")

    complete(cb, trials, a)  # the only completed trial is the best so far: its last checkpoint stays
    assert kept(runs["a"]) == [RAY_CKPTS[-1]]
    complete(cb, trials, b)  # worse: drops all of its checkpoints
    assert kept(runs["a"]) == [RAY_CKPTS[-1]] and kept(runs["b"]) == []
    complete(cb, trials, c)  # better: the previous best's checkpoint goes
    assert kept(runs["a"]) == [] and kept(runs["c"]) == [RAY_CKPTS[-1]]
    # d is still running (the best loss of all so far): it keeps every checkpoint for --resume.
    assert kept(runs["d"]) == list(RAY_CKPTS)
    for t in "abc":  # records and Ray's own snapshot file stay; the trial is marked finished
        assert (runs[t] / "records.csv").is_file() and (runs[t] / SNAPSHOT).is_file()
        assert was_finished(runs[t])
    assert not was_finished(runs["d"])
    size, folders = footprint(trials_dir.parent)
    assert folders == [f"trials/c/{RAY_CKPTS[-1]}", *(f"trials/d/{n}" for n in RAY_CKPTS)]
    assert size == 3 * 100 + 4 * (len("step\n4\n") + 2) + sum(len((runs[t] / FINISHED).read_bytes()) for t in "abc")


def test_a_checkpoint_a_stopped_trial_writes_after_it_completed_goes_at_the_next_completion(tmp_path):
    """Tune calls on_trial_complete before it stops the trial's actor: its workers may still
    report one more checkpoint."""
    trials_dir = Loc(tmp_path / "trials")
    runs = {t: trial_folder(trials_dir, t) for t in ("a", "b", "c")}
    trials = [trial("a", 0.5, runs["a"]), trial("b", 0.7, runs["b"]), trial("c", 0.9, runs["c"])]
    cb = CheckpointRetention(str(trials_dir), keep="best", metric="loss", mode="min")
    late = "checkpoint_2026-01-01_00-00-03.000000"
    complete(cb, trials, trials[1])
    (runs["b"] / late / "model.pt").write_bytes(b"late")
    complete(cb, trials, trials[0])
    assert kept(runs["b"]) == []
    (runs["a"] / late / "model.pt").write_bytes(b"late")
    complete(cb, trials, trials[2])
    assert kept(runs["a"]) == [RAY_CKPTS[-1]], "the best keeps its last reported checkpoint, not a later one"
    assert kept(runs["c"]) == []


def test_keep_all_drops_nothing_and_keep_none_drops_every_completed_trials(tmp_path):
    trials_dir = Loc(tmp_path / "trials")
    runs = {t: trial_folder(trials_dir, t) for t in ("a", "b")}
    trials = [trial("a", 0.5, runs["a"]), trial("b", 0.7, runs["b"])]
    everything = CheckpointRetention(str(trials_dir), keep="all", metric="loss", mode="min")
    for t in trials:
        complete(everything, trials, t)
    everything.on_experiment_end(trials=trials)
    assert kept(runs["a"]) == kept(runs["b"]) == list(RAY_CKPTS) and not was_finished(runs["a"])

    nothing = CheckpointRetention(str(trials_dir), keep="none", metric="loss", mode="min")
    complete(nothing, trials, trials[0])
    assert kept(runs["a"]) == [] and kept(runs["b"]) == list(RAY_CKPTS)  # b has not completed


def test_the_mode_decides_which_trial_is_best(tmp_path):
    trials_dir = Loc(tmp_path / "trials")
    runs = {t: trial_folder(trials_dir, t) for t in ("a", "b")}
    a, b = trial("a", 0.0, runs["a"]), trial("b", 0.0, runs["b"])
    a.metric_analysis, b.metric_analysis = {"f1": {"max": 80.0, "min": 1.0}}, {"f1": {"max": 60.0, "min": 0.0}}
    cb = CheckpointRetention(str(trials_dir), keep="best", metric="f1", mode="max")
    complete(cb, [a, b], b)
    complete(cb, [a, b], a)
    assert kept(runs["a"]) == [RAY_CKPTS[-1]] and kept(runs["b"]) == []


def test_local_mode_checkpoints_and_their_pointer_are_dropped_too(trials_dir):
    own = ("checkpoint_local_000000002", "checkpoint_local_000000004")
    runs = {t: trial_folder(trials_dir, t, checkpoints=own) for t in ("a", "b")}
    for run in runs.values():
        (run / "checkpoint_local.txt").write_text(own[-1])  # local mode on an object store
    trials = [trial("a", 0.5), trial("b", 0.7)]  # local mode reports no checkpoint path to Tune
    cb = CheckpointRetention(str(trials_dir), keep="best", metric="loss", mode="min")
    for t in trials:
        complete(cb, trials, t)
    assert kept(runs["a"]) == [own[-1]] and (runs["a"] / "checkpoint_local.txt").is_file()
    assert kept(runs["b"]) == [] and not (runs["b"] / "checkpoint_local.txt").exists()


def test_a_resumed_sweep_prunes_what_was_left_but_not_the_trials_an_interruption_stopped(tmp_path):
    """Tune saves the callback's state with the trials' statuses; after `--resume` the final pass
    drops a checkpoint written while a stopped trial shut down, and leaves a trial alone that
    was only stopped because the sweep itself was interrupted."""
    trials_dir = Loc(tmp_path / "trials")
    runs = {t: trial_folder(trials_dir, t) for t in ("a", "b", "c")}
    trials = [trial("a", 0.5, runs["a"]), trial("b", 0.7, runs["b"]), trial("c", 0.9, runs["c"])]
    first = CheckpointRetention(str(trials_dir), keep="best", metric="loss", mode="min")
    complete(first, trials, trials[0])
    complete(first, trials, trials[1])
    state = first.get_state()

    late = "checkpoint_2026-01-01_00-00-03.000000"
    (runs["b"] / late / "model.pt").write_bytes(b"late")  # written by b's workers after it completed
    resumed = pickle.loads(pickle.dumps(CheckpointRetention(str(trials_dir), keep="best", metric="loss", mode="min")))
    resumed.set_state(state)
    resumed.on_experiment_end(trials=trials)  # c was running when the sweep was interrupted
    assert kept(runs["a"]) == [RAY_CKPTS[-1]] and kept(runs["b"]) == []
    assert kept(runs["c"]) == list(RAY_CKPTS) and not was_finished(runs["c"])


def test_a_failure_to_prune_is_logged_not_raised(tmp_path, caplog):
    """Tune turns a trial whose completion callback raises into an error: warn instead."""
    trials_dir = Loc(tmp_path / "trials")
    run = trial_folder(trials_dir, "a")
    t = trial("a", 0.5, run)
    (run / FINISHED).local.mkdir()  # the marker cannot be written over a folder
    cb = CheckpointRetention(str(trials_dir), keep="none", metric="loss", mode="min")
    complete(cb, [t], t)
    assert "could not drop the checkpoints of trial a" in caplog.text
    assert kept(run) == sorted([*RAY_CKPTS, FINISHED])


def test_human_size():
    sizes = (0, 999, 1000, 401_000_000, 3.8e9)
    assert [human_size(n) for n in sizes] == ["0 B", "999 B", "1.0 kB", "401.0 MB", "3.8 GB"]


# --- the space a trial gets ------------------------------------------------------------------------

def write_space(tmp_path, **output):
    base = {"name": "base", "task": "squad", "data": {"synth": {}}, "scaling": {"num_workers": 1},
            "train": {"per_worker_batch": 4, "global_batch": 8, "steps": 4}, "eval": {"every_steps": 2}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    space = {"name": "s", "base": "base.yaml", "output": {"dir": str(tmp_path / "sweeps"), **output},
             "parameters": {"optimizer.lr": {"distribution": "grid", "values": [0.01, 0.02]}}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    return tmp_path / "space.yaml"


def test_keep_checkpoints_is_checked_and_names_the_valid_values(tmp_path):
    from scaling_study.tune.space import load_space

    assert load_space(write_space(tmp_path)).output.keep_checkpoints == "best"
    assert load_space(write_space(tmp_path, keep_checkpoints="none")).output.keep_checkpoints == "none"
    with pytest.raises(ConfigError, match=r"space.yaml.*output.keep_checkpoints.*'last'.*'best' \| 'all' \| 'none'"):
        load_space(write_space(tmp_path, keep_checkpoints="last"))


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


def test_a_trial_that_had_completed_is_not_trained_again(tmp_path, fake_trial_session):
    """A sweep killed after pruning a completed trial, before Tune saved it as completed, restarts
    it on --resume: the driver returns at once (its checkpoints are gone)."""
    from scaling_study.tune.space import load_space
    from scaling_study.tune.sweep import TRIALS_DIR, trial_driver

    sweep_dir = tmp_path / "sweeps" / "s"
    Loc(sweep_dir / TRIALS_DIR / "t1" / FINISHED).write_text("{}")
    trial_driver({"optimizer.lr": 0.02}, space=load_space(write_space(tmp_path)), sweep_dir=str(sweep_dir),
                 cwd=str(tmp_path))
    assert fake_trial_session == []
    assert not (sweep_dir / TRIALS_DIR / "t1" / "job.yaml").exists()
