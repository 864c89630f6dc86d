"""Job YAML -> typed config: shipped jobs load; bad input fails naming file, key and valid values."""
import dataclasses
import os
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Union, get_args, get_origin

import pytest
import yaml

from scaling_study.config import Job, dump_job, job_from_dict, load_job
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
    ({"schedule": {"name": "linear"}}, "schedule.name", "valid: poly, lans, cosine, constant"),
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
    with pytest.raises(ConfigError) as info:
        load_job(path, ["train.steps=0"])
    assert str(info.value).startswith(f"{path} (--set train.steps=0): train.steps: must be > 0")
    with pytest.raises(ConfigError, match=r"job.yaml \(--set optimizer.lrr=1\): optimizer.lrr: unknown key"):
        load_job(path, ["optimizer.lrr=1"])
    with pytest.raises(ConfigError, match=r"job.yaml \(--set train.phases.0.steps=1\): train.phases.0: no item 0"):
        load_job(path, ["train.phases=[]", "train.phases.0.steps=1"])
    with pytest.raises(ConfigError, match=r"\(--set optimizer.args.betas.0.x=1\): optimizer.args.betas.0: is not a map"):
        load_job(path, ["optimizer.args.betas=[0.9, 0.98]", "optimizer.args.betas.0.x=1"])
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

    job = ROOT / "jobs" / "quickstart.yaml"
    assert main(["run", str(job), flag, value]) == 2
    assert capsys.readouterr().err.startswith(f"error: {job} ({flag} {value}): {key}: ")


def _float_keys(cls, set_key: str = "", err_key: str = ""):
    """(--set key, error key) of every field of `cls` (recursively) that holds a float."""
    join = lambda a, b: f"{a}.{b}" if a else b
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        for arg in get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,):
            s, e = join(set_key, f.name), join(err_key, f.name)
            if arg is float:
                yield s, e
            elif dataclasses.is_dataclass(arg):
                yield from _float_keys(arg, s, e)
            elif get_origin(arg) is list and dataclasses.is_dataclass(get_args(arg)[0]):
                yield from _float_keys(get_args(arg)[0], f"{s}.0", f"{e}[0]")
            elif get_origin(arg) is dict and get_args(arg)[1] is float:
                yield f"{s}.GPU", f"{e}.GPU"


FLOAT_KEYS = sorted(set(_float_keys(Job))) + [("optimizer.args.eps", "optimizer.args.eps"),
                                                ("optimizer.args.betas", "optimizer.args.betas[1]"),
                                                ("schedule.args.power", "schedule.args.power")]


def test_the_audit_covers_the_float_fields():
    keys = {s for s, _ in FLOAT_KEYS}
    assert {"optimizer.lr", "optimizer.weight_decay", "schedule.warmup", "model.dropout", "train.max_grad_norm",
            "eval.target.value", "train.phases.0.lr", "scaling.resources_per_worker.GPU"} <= keys


# YAML's .inf/.nan are floats; a float field also reads the string "inf" as a number (free-form
# `args` keep it a string, which the optimizer itself rejects).
NON_FINITE = [(s, e, v) for s, e in FLOAT_KEYS for v in (".inf", "-.inf", ".nan") + (() if ".args." in s else ("inf",))]


@pytest.mark.parametrize("set_key, err_key, value", NON_FINITE, ids=[f"{s}={v}" for s, _, v in NON_FINITE])
def test_non_finite_numbers_fail_naming_the_key(tmp_path, set_key, err_key, value):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(make(train={"phases": [{"steps": 10}]}, eval={"target": {"value": 50.0}})))
    item = f"{set_key}=[0.9, {value}]" if set_key.endswith("betas") else f"{set_key}={value}"
    with pytest.raises(ConfigError) as info:
        load_job(path, [item])
    assert info.value.key == err_key, str(info.value)
    assert "finite" in info.value.message and info.value.source == f"{path} (--set {item})"


@pytest.mark.parametrize("sections, key, words", [
    ({"schedule": {"warmup": 2.5}}, "schedule.warmup", "whole number of steps"),
    ({"schedule": {"lr_rule": "cubic"}}, "schedule.lr_rule", "valid: sqrt, linear, none"),
    ({"optimizer": {"name": "lamd"}}, "optimizer.name", "valid: lamb, lans, lars, adamw, radam, or an import path"),
    ({"model": {"dropout": 1.0}}, "model.dropout", "< 1"),
    ({"data": {"synth": {}, "n_best_size": 0}}, "data.n_best_size", "> 0"),
    ({"scaling": {"resources_per_worker": {"GPU": -1}}}, "scaling.resources_per_worker.GPU", ">= 0"),
    ({"train": {"steps": 5, "precision": "fp16"}}, "train.precision", "fp16 needs GPUs"),
])
def test_more_bad_values_name_the_key(sections, key, words):
    with pytest.raises(ConfigError) as info:
        job_from_dict(make(**sections), source="jobs/x.yaml")
    assert (info.value.key, info.value.source) == (key, "jobs/x.yaml") and words in info.value.message, str(info.value)


def test_fp16_loads_with_gpus_and_names_are_case_free_for_optimizers():
    job = job_from_dict(make(train={"steps": 5, "precision": "fp16"}, scaling={"use_gpu": True},
                             optimizer={"name": "LAMB"}))
    assert job.train.precision == "fp16" and job.optimizer.name == "LAMB"
    assert job_from_dict(make(optimizer={"name": "torch.optim:SGD"})).optimizer.name == "torch.optim:SGD"


def test_config_names_are_the_registries_names():
    from scaling_study.optim import NO_DECAY, OPTIMIZERS, SCHEDULES
    from scaling_study.optim.names import OPTIMIZER_NAMES, SCHEDULE_NAMES

    assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES and tuple(SCHEDULES) == SCHEDULE_NAMES
    assert job_from_dict(make()).optimizer.no_decay == list(NO_DECAY)


def test_loading_a_job_imports_neither_torch_nor_ray():
    code = ("import sys; from scaling_study.config import load_job; load_job(sys.argv[1]); "
            "assert not {'torch', 'ray'} & set(sys.modules), sorted({'torch', 'ray'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code, str(ROOT / "jobs" / "quickstart.yaml")], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_gpu_keys_nccl_env_timeout_tf32_and_tokenizer(tmp_path):
    from scaling_study.config import load_job

    path = tmp_path / "job.yaml"
    path.write_text("name: g\ndata: {synth: {}}\ntrain: {steps: 2}\n")
    job = load_job(path, ["scaling.nccl_env={NCCL_SOCKET_IFNAME: eth0, NCCL_DEBUG: WARN}",
                          "scaling.process_group_timeout_s=600", "train.tf32=false", "model.tokenizer=/tok"])
    assert job.scaling.nccl_env == {"NCCL_SOCKET_IFNAME": "eth0", "NCCL_DEBUG": "WARN"}
    assert (job.scaling.process_group_timeout_s, job.train.tf32, job.model.tokenizer) == (600, False, "/tok")
    assert load_job(path).train.tf32 and load_job(path).scaling.process_group_timeout_s == 1800
    with pytest.raises(ConfigError, match="scaling.nccl_env.GLOO_X: .*valid: NCCL_\\* variables"):
        load_job(path, ["scaling.nccl_env={GLOO_X: a}"])
    with pytest.raises(ConfigError, match="scaling.process_group_timeout_s"):
        load_job(path, ["scaling.process_group_timeout_s=0"])
