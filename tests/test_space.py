"""Search spaces: shipped files load; bad files fail naming the file and the dotted key; a
sampled point becomes the right job (batch arithmetic of weak/strong studies, the LR rule)."""
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from scaling_study.errors import ConfigError
from scaling_study.tune import space_checks
from scaling_study.tune.space import load_space
from scaling_study.tune.study import strong_micro_batch

ROOT = Path(__file__).resolve().parents[1]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))

BASE = {"name": "base", "task": "squad", "data": {"synth": {}}, "scaling": {"num_workers": 2},
        "train": {"per_worker_batch": 8, "global_batch": 32, "steps": 20, "seed": 7},
        "eval": {"every_steps": 5, "target": {"metric": "f1", "value": 50.0}}}
SPACE = {"name": "s", "base": "base.yaml",
         "parameters": {"optimizer.lr": {"distribution": "loguniform", "min": 1e-4, "max": 1e-2}}}


def write(tmp_path, base_job=None, **space) -> Path:
    """A base job and a search space (SPACE with `space`'s top-level keys replaced) in tmp_path."""
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base_job or BASE))
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**SPACE, **space}))
    return path


def batch(job):
    (phase,) = job.phases()
    return phase.per_worker_batch, phase.grad_accum, phase.global_batch


@pytest.mark.parametrize("path", SPACES, ids=[p.name for p in SPACES])
def test_every_shipped_space_loads(path):
    space = load_space(path)  # builds and checks the job of every grid point
    assert space.trial_count() >= len(space.grid_points()) >= 1
    assert path.read_text().startswith("#"), "each shipped space starts with a comment saying what it studies"


def test_each_shipped_space_has_a_small_variant():
    names = {p.stem for p in SPACES}
    assert {"lamb_lr_batch", "optimizer_shootout", "weak_scaling", "aggregation_frequency"} <= names
    # quickstart, asha_vs_grid, the critical-batch pair and the stress space of `bench sweeps` are
    # laptop-sized already: no full variant to shrink.
    studies = names - {"quickstart", "asha_vs_grid", "critical_batch_lamb", "critical_batch_adamw",
                       "stress_mixed_workers"}
    assert all(f"{n}_small" in names for n in studies if not n.endswith("_small"))


GRID = {"distribution": "grid"}
ASHA = {"name": "asha", "grace_period": 64, "max_t": 320}
BAD = [
    ({"parameters": {"optimizer.lrr": {**GRID, "values": [1]}}}, "parameters.optimizer.lrr", "valid keys under optimizer: name, lr"),
    ({"parameters": {"optimiser.lr": {**GRID, "values": [1]}}}, "parameters.optimiser.lr", "valid keys under the job"),
    ({"parameters": {"optimizer": {**GRID, "values": [1]}}}, "parameters.optimizer", "is a section"),
    ({"parameters": {"train.steps.x": {**GRID, "values": [1]}}}, "parameters.train.steps.x", "single value"),
    ({"parameters": {"optimizer.name": {"distribution": "choice", "values": []}}}, "parameters.optimizer.name.values", "at least one"),
    ({"parameters": {"optimizer.name": {"distribution": "grid"}}}, "parameters.optimizer.name.values", "at least one"),
    ({"parameters": {"optimizer.name": {**GRID, "values": ["lamb", "lamb"]}}}, "parameters.optimizer.name.values", "more than once"),
    ({"parameters": {"optimizer.lr": {"distribution": "uniform", "min": 0.2, "max": 0.1}}}, "parameters.optimizer.lr.min", "greater than max"),
    ({"parameters": {"optimizer.lr": {"distribution": "loguniform", "min": 0.0, "max": 0.1}}}, "parameters.optimizer.lr.min", "> 0"),
    ({"parameters": {"train.seed": {"distribution": "randint", "min": 0, "max": 2.5}}}, "parameters.train.seed.max", "integers"),
    ({"parameters": {"optimizer.lr": {"distribution": "normal", "min": 0, "max": 1}}}, "parameters.optimizer.lr.distribution", "'choice'"),
    ({"parameters": {"optimizer.lr": {"distribution": "uniform", "values": [1]}}}, "parameters.optimizer.lr.values", "min and max"),
    ({"parameters": {"optimizer.lr": [1, 2]}}, "parameters.optimizer.lr", "expected a mapping"),
    ({"parameters": {"train.global_batch": {**GRID, "values": [32, 40]}}}, "parameters.train.global_batch", "train.global_batch=40"),
    ({"parameters": {"train.global_batch": {"distribution": "randint", "min": 32, "max": 48}}}, "parameters.train.global_batch", "train.global_batch=33"),
    ({"parameters": {"train.per_worker_batch": {**GRID, "values": [8, 12]}}}, "parameters.train.per_worker_batch", "per_worker_batch=12"),
    ({"parameters": {"train.steps": {"distribution": "uniform", "min": 5, "max": 10}}}, "parameters.train.steps", "expected int"),
    ({"parameters": {"name": {**GRID, "values": ["a", "b"]}}}, "parameters.name", "cannot be swept"),
    ({"parameters": {"optimizer.lr": {**GRID, "values": [0.1]}}, "set": {"optimizer.lr": 0.2}}, "parameters.optimizer.lr", "also fixed in set"),
    ({"set": {"train.stepz": 3}}, "set.train.stepz", "unknown key"),
    ({"set": {"train.global_batch": 40}}, "set.train.global_batch", "not a multiple"),
    ({"lr_scaling": {"rule": "sqrt"}, "set": {"schedule.lr_rule": "linear"}}, "set.schedule.lr_rule", "lr_scaling"),
    ({"parameters": {}}, "parameters", "no dimensions"),
    ({"paramaters": {}}, "paramaters", "valid keys here"),
    ({"base": "missing.yaml"}, "base", "no job file"),
    ({"num_samples": 0}, "num_samples", ">= 1"),
    ({"study": {"mode": "strong", "workers": [3]}}, "study.workers", "cannot be split evenly over 3 workers"),
    ({"study": {"mode": "weak", "workers": []}}, "study.workers", "at least one"),
    ({"study": {"mode": "weak", "workers": [1, 2]}, "parameters": {"scaling.num_workers": {**GRID, "values": [1]}}},
     "parameters.scaling.num_workers", "set by the scaling study"),
    ({"study": {"mode": "weak", "workers": [1, 2]}, "parameters": {"train.global_batch": {**GRID, "values": [32]}}},
     "parameters.train.global_batch", "keeps the per-worker batch"),
    ({"study": {"mode": "strong", "workers": [1, 2]}, "parameters": {"train.grad_accum": {**GRID, "values": [1]}}},
     "parameters.train.grad_accum", "keeps the global batch"),
    ({"scheduler": {"metric": "mlm_acc"}}, "scheduler.metric", "valid: f1, em, loss"),
    ({"scheduler": {"metric": "f1", "mode": "min"}}, "scheduler.mode", "valid: max"),
    ({"scheduler": {"name": "asha", "time_attr": "training_iteration", "grace_period": 1, "max_t": 2}},
     "scheduler.time_attr", "restarts at 1 when a trial is resumed"),
    ({"scheduler": {"name": "asha", "time_attr": "epoch", "grace_period": 1, "max_t": 2}}, "scheduler.time_attr", "valid: samples"),
    ({"scheduler": {"name": "asha", "grace_period": 64, "max_t": 32}}, "scheduler.grace_period", "greater than max_t"),
    ({"scheduler": {"name": "asha", "max_t": 32}}, "scheduler.grace_period", "ASHA needs a value"),
    ({"scheduler": {"name": "asha", "grace_period": 640, "max_t": 6400}}, "scheduler.grace_period", "never stop"),
    ({"scheduler": {"grace_period": 64}}, "scheduler.grace_period", "name: asha only"),
    ({"scheduler": {"group_by": ["optimizer.lr"]}}, "scheduler.group_by", "name: asha only"),
    ({"scheduler": {**ASHA, "group_by": ["optimizer.name"]}}, "scheduler.group_by",
     "'optimizer.name' is not swept by this space; valid: optimizer.lr"),
    ({"scheduler": {**ASHA, "group_by": ["optimizer.lr"]}}, "scheduler.group_by", "sampled from loguniform"),
    ({"scheduler": {**ASHA, "group_by": ["optimizer.name", "optimizer.name"]},
      "parameters": {"optimizer.name": {**GRID, "values": ["lamb", "lans"]}}}, "scheduler.group_by", "more than once"),
    ({"search": {"algorithm": "grid"}}, "parameters.optimizer.lr.distribution", "cannot be enumerated"),
    ({"output": {"dir": "webdav://host/sweeps"}}, "output.dir", "webdav:// is not a file system"),
    ({"parameters": {"optimizer.lr": {"distribution": "uniform", "min": 0.1, "max": math.inf}}},
     "parameters.optimizer.lr.max", "finite"),
    ({"parameters": {"optimizer.lr": {"distribution": "loguniform", "min": math.nan, "max": 0.1}}},
     "parameters.optimizer.lr.min", "finite"),
    ({"parameters": {"optimizer.lr": {**GRID, "values": [0.1, math.nan]}}}, "parameters.optimizer.lr", "finite"),
    ({"parameters": {"optimizer.args.eps": {**GRID, "values": [1e-6, math.inf]}}},
     "parameters.optimizer.args.eps", "finite"),
    ({"scheduler": {"name": "asha", "grace_period": math.nan, "max_t": 32}}, "scheduler.grace_period", "finite"),
    ({"scheduler": {"name": "asha", "grace_period": 8, "max_t": 32, "reduction_factor": math.inf}},
     "scheduler.reduction_factor", "finite"),
    ({"lr_scaling": {"rule": "cubic"}}, "lr_scaling.rule", "valid: sqrt, linear, none"),
    ({"lr_scaling": {"rule": "sqrt", "reference_batch": 0}}, "lr_scaling.reference_batch", "> 0"),
    ({"study": {"mode": "weak", "workers": [2, 0]}}, "study.workers[1]", ">= 1"),
    ({"max_concurrent_trials": 0}, "max_concurrent_trials", ">= 1"),
]


@pytest.mark.parametrize("space, key, words", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_spaces_name_the_file_and_key(tmp_path, space, key, words):
    path = write(tmp_path, **space)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    err = info.value
    assert (err.key, err.source) == (key, str(path)), str(err)
    assert words in err.message, str(err)
    assert str(err).startswith(f"{path}: {key}: ")


def test_a_set_key_past_the_base_phases_is_blamed_on_set(tmp_path):
    base = {**BASE, "train": {**BASE["train"], "phases": [{"steps": 10}, {"steps": 10}]}}
    path = write(tmp_path, base, set={"train.phases.3.steps": 5})
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value).startswith(f"{path}: set.train.phases.3.steps: train.phases.3: no item 3"), str(info.value)


def test_optuna_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(space_checks.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"search.algorithm: optuna is not installed here \(pip install optuna\)"):
        load_space(write(tmp_path, search={"algorithm": "optuna"}))


def test_optuna_cannot_run_a_grid(tmp_path, monkeypatch):
    monkeypatch.setattr(space_checks.importlib.util, "find_spec", lambda name: object())
    path = write(tmp_path, search={"algorithm": "optuna"},
                 parameters={"optimizer.name": {**GRID, "values": ["lamb", "adamw"]}})
    with pytest.raises(ConfigError, match="parameters.optimizer.name.distribution: Optuna .* use choice"):
        load_space(path)


def test_too_many_combinations_to_check(tmp_path):
    path = write(tmp_path, parameters={"train.seed": {**GRID, "values": list(range(50))},
                                       "optimizer.lr": {**GRID, "values": [i / 1000 + 0.001 for i in range(50)]}})
    with pytest.raises(ConfigError, match="parameters: 2500 combinations to check"):
        load_space(path)


def test_param_space_maps_onto_tune_domains(tmp_path):
    from ray import tune
    from ray.tune.search.sample import Categorical, Float, Integer

    path = write(tmp_path, parameters={
        "optimizer.lr": {"distribution": "loguniform", "min": 1e-4, "max": 1e-2},
        "schedule.warmup": {"distribution": "uniform", "min": 0.0, "max": 0.2},
        "train.seed": {"distribution": "randint", "min": 0, "max": 3},
        "optimizer.name": {"distribution": "choice", "values": ["lamb", "lans"]},
        "train.global_batch": {**GRID, "values": [32, 64]}})
    ps = load_space(path).param_space()
    lr, warmup, seed, name = ps["optimizer.lr"], ps["schedule.warmup"], ps["train.seed"], ps["optimizer.name"]
    assert isinstance(lr, Float) and isinstance(lr.get_sampler(), Float._LogUniform)
    assert (lr.lower, lr.upper) == (1e-4, 1e-2)
    assert isinstance(warmup, Float) and isinstance(warmup.get_sampler(), Float._Uniform)
    assert (warmup.lower, warmup.upper) == (0.0, 0.2)
    assert isinstance(seed, Integer) and (seed.lower, seed.upper) == (0, 4)  # max inclusive: Tune's is not
    assert sorted({seed.sample() for _ in range(200)}) == [0, 1, 2, 3]
    assert isinstance(name, Categorical) and name.categories == ["lamb", "lans"]
    assert ps["train.global_batch"] == tune.grid_search([32, 64])


def test_grid_search_enumerates_choices(tmp_path):
    path = write(tmp_path, search={"algorithm": "grid"}, num_samples=2, parameters={
        "optimizer.name": {"distribution": "choice", "values": ["lamb", "lans"]},
        "train.global_batch": {**GRID, "values": [32, 64, 128]}})
    space = load_space(path)
    assert space.param_space()["optimizer.name"] == {"grid_search": ["lamb", "lans"]}
    assert len(space.grid_points()) == 6 and space.trial_count() == 12
    assert {"optimizer.name": "lans", "train.global_batch": 128} in space.grid_points()


def test_tune_objects(tmp_path):
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import BasicVariantGenerator

    from scaling_study.tune.asha import ALL, PersistentASHA

    path = write(tmp_path, num_samples=3, max_concurrent_trials=2, search={"seed": 5}, failure={"max_failures": 2},
                 scheduler={"name": "asha", "grace_period": 64, "max_t": 320, "reduction_factor": 2})
    space = load_space(path)
    config = space.tune_config(str(tmp_path / "asha.json"))
    assert (config.metric, config.mode, config.num_samples) == ("f1", "max", 3)
    # The limit sits on the generator: Tune ignores TuneConfig.max_concurrent_trials for one passed in.
    assert isinstance(config.search_alg, BasicVariantGenerator) and config.search_alg.max_concurrent == 2
    assert space.tune_config(str(tmp_path / "a.json"), max_concurrent_trials=1).search_alg.max_concurrent == 1
    sched = config.scheduler
    assert isinstance(sched, PersistentASHA)
    sched.set_search_properties(config.metric, config.mode)  # as Tune does
    trial = SimpleNamespace(trial_id="t0", config={})
    sched.on_trial_add(None, trial)
    assert [m for m, _ in sched.rungs()[ALL][0]] == [256.0, 128.0, 64.0]  # grace_period 64 x rf 2 up to max_t
    assert sched.on_trial_result(None, trial, {"samples": 64, "f1": 1.0}) == TrialScheduler.CONTINUE
    assert sched.rungs()[ALL][0][-1][1] == {"t0": 1.0}  # on the samples clock
    assert sched.on_trial_result(None, trial, {"samples": 320, "f1": 1.0}) == TrialScheduler.STOP  # max_t
    assert space.failure_config().max_failures == 2


def test_metric_and_mode_default_from_the_base_job(tmp_path):
    base = {**BASE, "eval": {"every_steps": 5, "target": {"metric": "loss", "value": 1.0}}}
    space = load_space(write(tmp_path, base_job=base))
    assert (space.scheduler.metric, space.scheduler.mode) == ("loss", "min")


STUDY_SPACE = {"parameters": {}, "lr_scaling": {"rule": "sqrt", "reference_batch": 32}}


@pytest.mark.parametrize("mode, workers, expected", [
    # base: 8 per worker x 2 workers x 2 accumulation = 32
    ("weak", 1, (8, 2, 16)), ("weak", 2, (8, 2, 32)), ("weak", 8, (8, 2, 128)),
    ("strong", 1, (8, 4, 32)), ("strong", 2, (8, 2, 32)), ("strong", 4, (8, 1, 32)),
    ("strong", 8, (4, 1, 32)), ("strong", 16, (2, 1, 32)),
])
def test_study_batch_arithmetic(tmp_path, mode, workers, expected):
    path = write(tmp_path, **STUDY_SPACE, study={"mode": mode, "workers": [workers], "seeds": [0, 1]})
    space = load_space(path)
    job = space.job_for({"scaling.num_workers": workers, "train.seed": 1}, "trial_0001")
    assert batch(job) == expected
    assert (job.name, job.scaling.num_workers, job.train.seed, job.train.scaling_mode) == ("trial_0001", workers, 1, mode)


def test_study_is_a_grid_over_workers_and_seeds_one_key_from_strong(tmp_path):
    path = write(tmp_path, **STUDY_SPACE, study={"mode": "weak", "workers": [1, 2, 4]})
    weak = load_space(path)
    assert weak.grid_points() == [{"scaling.num_workers": w, "train.seed": 7} for w in (1, 2, 4)]  # base's seed
    assert weak.param_space() == {"scaling.num_workers": {"grid_search": [1, 2, 4]}, "train.seed": {"grid_search": [7]}}
    strong = load_space(path, ["study.mode=strong"])
    globals_ = {batch(strong.job_for(p, "t"))[2] for p in strong.grid_points()}
    assert globals_ == {32} and strong.job_for(strong.grid_points()[0], "t").train.scaling_mode == "strong"


@pytest.mark.parametrize("global_batch, pwb, workers, expected", [
    (32, 8, 2, 8), (32, 8, 8, 4), (48, 16, 2, 12), (48, 8, 5, None), (30, 8, 2, 5), (64, 8, 64, 1),
])
def test_strong_micro_batch(global_batch, pwb, workers, expected):
    assert strong_micro_batch(global_batch, pwb, workers) == expected


def test_study_keeps_each_phase_batch(tmp_path):
    """Two-phase pretraining: weak keeps each phase's micro-batch and accumulation, strong its global batch."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "mlm.yaml").write_text((ROOT / "jobs" / "mlm_two_phase.yaml").read_text())
    path = write(tmp_path, parameters={}, base="jobs/mlm.yaml", study={"mode": "weak", "workers": [1, 4]})
    space = load_space(path)
    phases = lambda job: [(p.per_worker_batch, p.grad_accum, p.global_batch) for p in job.phases()]
    # base: phase 1 16 x 2 workers x 2 = 64, phase 2 4 x 2 x 4 = 32
    assert phases(space.job_for({"scaling.num_workers": 4, "train.seed": 0}, "t")) == [(16, 2, 128), (4, 4, 64)]
    space = load_space(path, ["study.mode=strong"])
    assert phases(space.job_for({"scaling.num_workers": 4, "train.seed": 0}, "t")) == [(16, 1, 64), (4, 2, 32)]
    assert phases(space.job_for({"scaling.num_workers": 1, "train.seed": 0}, "t")) == [(16, 4, 64), (4, 8, 32)]


def _peak_lr(job):
    return job.peak_lr(job.phases()[0])


@pytest.mark.parametrize("rule, factor", [("sqrt", math.sqrt), ("linear", lambda r: r)])
def test_lr_follows_the_rule_when_the_batch_is_swept(tmp_path, rule, factor):
    path = write(tmp_path, lr_scaling={"rule": rule, "reference_batch": 32}, parameters={
        "train.global_batch": {**GRID, "values": [32, 128, 512]},
        "optimizer.lr": {"distribution": "loguniform", "min": 1e-3, "max": 1e-2}})
    space = load_space(path)
    for gb in (32, 128, 512):
        job = space.job_for({"train.global_batch": gb, "optimizer.lr": 2e-3}, "t")
        assert (job.schedule.lr_rule, job.schedule.reference_batch, batch(job)[2]) == (rule, 32, gb)
        assert job.optimizer.lr == 2e-3
    assert _peak_lr(job) == pytest.approx(2e-3 * factor(512 / 32))


def test_lr_reference_defaults_to_the_base_batch_after_set(tmp_path):
    path = write(tmp_path, lr_scaling={"rule": "linear"}, set={"train.global_batch": 64},
                 parameters={"train.per_worker_batch": {**GRID, "values": [8, 16]}})
    job = load_space(path).job_for({"train.per_worker_batch": 16}, "t")
    assert (job.schedule.lr_rule, job.schedule.reference_batch, batch(job)) == ("linear", 64, (16, 2, 64))


def test_swept_grad_accum_replaces_the_base_global_batch(tmp_path):
    path = write(tmp_path, parameters={"train.grad_accum": {**GRID, "values": [1, 10]}})
    space = load_space(path)
    assert [batch(space.job_for(p, "t")) for p in space.grid_points()] == [(8, 1, 16), (8, 10, 160)]


def test_overrides_reach_set_and_dimension_fields(tmp_path):
    path = write(tmp_path, parameters={"optimizer.lr": {"distribution": "loguniform", "min": 1e-4, "max": 1e-2}})
    space = load_space(path, ["set.train.steps=7", "parameters.optimizer.lr.max=0.05", "num_samples=3"])
    assert space.dimensions["optimizer.lr"].max == 0.05 and space.num_samples == 3
    assert space.job_for({"optimizer.lr": 0.01}, "t").train.steps == 7
    with pytest.raises(ConfigError) as info:
        load_space(path, ["set.train.steps=0"])
    assert str(info.value).startswith(f"{path} (--set set.train.steps=0): set.train.steps: must be > 0")


def test_job_for_takes_exactly_the_dimensions(tmp_path):
    space = load_space(write(tmp_path))
    with pytest.raises(ConfigError, match="parameters.optimizer.lr: has no value"):
        space.job_for({}, "t")
    with pytest.raises(ConfigError, match="parameters.train.steps: is not a dimension of this space"):
        space.job_for({"optimizer.lr": 1e-3, "train.steps": 3}, "t")
    with pytest.raises(ValueError, match="plain folder name"):
        space.job_for({"optimizer.lr": 1e-3}, "a/b")


def test_check_points_give_every_dimension_a_value(tmp_path):
    path = write(tmp_path, study={"mode": "weak", "workers": [1, 2]}, parameters={
        "optimizer.lr": {"distribution": "loguniform", "min": 1e-4, "max": 1e-2},
        "train.per_worker_batch": {"distribution": "randint", "min": 4, "max": 6},
        "optimizer.name": {**GRID, "values": ["lamb", "lans"]}})
    space = load_space(path)
    points = space.check_points()
    assert len(points) == 2 * 3 * 2 * 2 * 1  # lr ends x every batch value x names x workers x seeds
    assert {p["train.per_worker_batch"] for p in points} == {4, 5, 6}
    widest = max(batch(space.job_for(p, "t"))[2] for p in points)
    assert widest == 6 * 2 * 2  # weak: 6 per worker x 2 workers x the base's 2 accumulation steps


def test_strong_study_keeps_a_swept_global_batch(tmp_path):
    path = write(tmp_path, study={"mode": "strong", "workers": [1, 4]},
                 parameters={"train.global_batch": {**GRID, "values": [32, 128]}})
    space = load_space(path)
    got = {(p["train.global_batch"], p["scaling.num_workers"]): batch(space.job_for(p, "t"))
           for p in space.grid_points()}
    assert got == {(32, 1): (8, 4, 32), (32, 4): (8, 1, 32), (128, 1): (8, 16, 128), (128, 4): (8, 4, 128)}
