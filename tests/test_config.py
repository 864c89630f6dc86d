"""Job YAML -> typed config: shipped jobs load; bad input fails naming file, key and valid values."""
from pathlib import Path

import pytest
import yaml

from scaling_study.config import dump_job, job_from_dict, load_job
from scaling_study.config.schema import to_dict
from scaling_study.errors import ConfigError, UserError

ROOT = Path(__file__).resolve().parents[1]
JOBS = sorted((ROOT / "jobs").glob("*.yaml"))

BASE = {"name": "t", "data": {"synth": {}}, "train": {"steps": 10}}


def make(**sections):
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


@pytest.mark.parametrize("path", JOBS, ids=[p.name for p in JOBS])
def test_every_shipped_job_loads_and_round_trips(path, tmp_path):
    job = load_job(path)
    assert job.phases() and all(p.global_batch > 0 for p in job.phases())
    again = load_job(dump_job(job, tmp_path / "job.yaml"))
    assert again == job


def test_shipped_jobs_exist():
    assert any(p.name == "quickstart.yaml" for p in JOBS)


def test_batch_arithmetic():
    job = job_from_dict(make(train={"steps": 5, "per_worker_batch": 8, "global_batch": 64}))
    (phase,) = job.phases()
    assert (phase.per_worker_batch, phase.grad_accum, phase.global_batch) == (8, 4, 64)
    job = job_from_dict(make(train={"steps": 5, "per_worker_batch": 8, "grad_accum": 3}))
    assert job.phases()[0].global_batch == 8 * 2 * 3


@pytest.mark.parametrize("sections, key, words", [
    ({"train": {"steps": 5, "global_batch": 60}}, "train.global_batch", "valid: 32, 64"),
    ({"train": {"steps": 5, "global_batch": 64, "grad_accum": 3}}, "train.grad_accum", "disagrees"),
    ({"train": {"stepz": 5}}, "train.stepz", "valid keys here"),
    ({"optimizer": {"lr": "fast"}}, "optimizer.lr", "expected float"),
    ({"optimizer": {"lr": -1.0}}, "optimizer.lr", "> 0"),
    ({"schedule": {"name": "linear"}}, "schedule.name", "'poly'"),
    ({"eval": {"target": {"metric": "mlm_acc"}}}, "eval.target.metric", "valid: f1, em, loss"),
    ({"eval": {"every_steps": None}}, "eval.every_steps", "exactly one"),
    ({"scaling": {"num_workers": True}}, "scaling.num_workers", "expected int"),
    ({"train": {"steps": 10, "phases": [{"steps": 4}, {"steps": 4}]}}, "train.steps", "add up to 8"),
    ({"train": {"steps": 5, "phases": [{"steps": 5, "global_batch": 48}]}}, "train.phases[0].global_batch", "multiple"),
    ({"data": {"train": "a.json"}}, "data.dev", "both"),
    ({"name": "a/b"}, "name", "plain folder name"),
    ({"output": {"dir": "https://host/runs"}}, "output.dir", "a file:// URI"),
    ({"output": {"dir": "s3:///runs"}}, "output.dir", "s3://BUCKET/folder"),
    ({"model": {"max_seq_length": 64}, "data": {"doc_stride": 32}}, "model.max_seq_length", "at least 68"),
])
def test_bad_jobs_name_the_key(sections, key, words):
    with pytest.raises(ConfigError) as info:
        job_from_dict(make(**sections), source="jobs/x.yaml")
    err = info.value
    assert err.key == key and words in err.message
    assert str(err).startswith("jobs/x.yaml: " + key)


def test_overrides_apply_and_are_blamed(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(make()))
    job = load_job(path, ["optimizer.lr=2e-3", "train.steps=7", "optimizer.args.betas=[0.9, 0.98]"])
    assert job.optimizer.lr == 2e-3 and job.train.steps == 7 and job.optimizer.args["betas"] == [0.9, 0.98]
    with pytest.raises(ConfigError, match=r"^--set train.steps=0: train.steps: must be > 0"):
        load_job(path, ["train.steps=0"])
    with pytest.raises(ConfigError, match="--set optimizer.lrr=1: optimizer.lrr: unknown key"):
        load_job(path, ["optimizer.lrr=1"])
    with pytest.raises(ConfigError, match="expected --set dotted.key=value"):
        load_job(path, ["optimizer.lr"])


def test_phase_override_by_index(tmp_path):
    job = load_job(ROOT / "jobs" / "mlm_two_phase.yaml", ["train.phases.1.steps=5"])
    assert job.phases()[1].steps == 5


def test_yaml_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain: {steps: 1\n")
    with pytest.raises(UserError, match=r"bad.yaml: line \d+"):
        load_job(bad)
    with pytest.raises(UserError, match="no such file"):
        load_job(tmp_path / "missing.yaml")
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_job(unsafe)


def test_to_dict_is_plain_yaml():
    job = job_from_dict(make(train={"steps": 3, "phases": [{"steps": 3, "seq_len": 112}]}))
    text = yaml.safe_dump(to_dict(job))
    assert job_from_dict(yaml.safe_load(text)) == job


def test_output_dir_as_a_file_uri_is_its_path(tmp_path):
    job = job_from_dict(make(output={"dir": f"file://{tmp_path}/my%20runs"}))
    assert job.output.dir == f"{tmp_path}/my runs"
    assert job_from_dict(make(output={"dir": "runs"})).output.dir == "runs"
    assert job_from_dict(make(output={"dir": "s3://bucket/runs"})).output.dir == "s3://bucket/runs"


@pytest.mark.parametrize("flag, value, key", [("--out", "ftp://host/runs", "output.dir"), ("--name", "a/b", "name")])
def test_run_flags_are_blamed_by_their_own_name(flag, value, key, capsys):
    from scaling_study.cli import main

    assert main(["run", str(ROOT / "jobs" / "quickstart.yaml"), flag, value]) == 2
    assert capsys.readouterr().err.startswith(f"error: {flag} {value}: {key}: ")
