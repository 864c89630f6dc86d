"""`scaling-study check`: every cluster-free check of jobs and spaces, an exit status for CI, no Ray."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scaling_study.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "jobs").glob("*.yaml")) + sorted((ROOT / "search_spaces").glob("*.yaml"))


def test_every_shipped_file_passes_without_importing_ray():
    code = ("import sys; from scaling_study.cli import main; rc = main(['check', *sys.argv[1:]]); "
            "assert 'ray' not in sys.modules, 'check imported ray'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, *map(str, SHIPPED)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"OK {p}" for p in SHIPPED]
    assert sum("(job: " in line for line in lines) == len(list((ROOT / "jobs").glob("*.yaml")))
    assert all("(search space: " in line for line in lines if "search_spaces" in line)


def job(tmp_path, name="job.yaml", **sections) -> Path:
    data = {"name": "t", "model": {"name": "tiny"}, "data": {"synth": {}, "dir": str(tmp_path / "data")},
            "train": {"steps": 10}, "output": {"dir": str(tmp_path / "runs")}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def check(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["check", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_failing_file_fails_the_run_and_the_others_still_report(tmp_path, capsys):
    good, bad = job(tmp_path), job(tmp_path, "bad.yaml", optimizer={"lr": float("inf")})
    rc, out, err = check(capsys, bad, good)
    assert rc == 2
    assert out.startswith(f"OK {good} (job: squad, model tiny, lamb, 1 phase(s), 2 worker(s))")
    assert err.startswith(f"error: {bad}: optimizer.lr: must be a finite number > 0, got inf")
    assert "1 of 2 file(s) failed" in err


@pytest.mark.parametrize("sections, key, words", [
    ({"model": {"name": "./no_such_model"}}, "model.name", "is not a folder"),
    ({"model": {"name": "~/no_such/model/dir"}}, "model.name", "valid: 'default'"),
    ({"train": {"steps": 10, "precision": "fp16"}}, "train.precision", "valid on CPU: fp32, bf16"),
    ({"data": {"train": "missing.json", "dev": "missing.json"}}, "data.train", "no file at 'missing.json'"),
    ({"optimizer": {"args": {"betas": [0.9, 1.5]}}}, "optimizer.args", "betas"),
    ({"schedule": {"name": "lans", "args": {"degree": 1, "speed": 2}}}, "schedule.args", "speed"),
    ({"schedule": {"warmup": 20}}, "schedule.warmup", "warmup=20"),
])
def test_job_checks_name_the_file_and_key(tmp_path, capsys, sections, key, words):
    path = job(tmp_path, **sections)
    rc, out, err = check(capsys, path)
    assert (rc, out) == (2, "")
    assert err.startswith(f"error: {path}: {key}: ") and words in err, err


def test_model_forms(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    for name in ("default", "base", "bert-base-uncased", "org/some-model", "./ckpt", str(tmp_path / "ckpt")):
        assert check(capsys, job(tmp_path, model={"name": name}))[0] == 0, name
    rc, _, err = check(capsys, job(tmp_path, model={"name": "empty"}))  # an existing folder is a path
    assert rc == 2 and "has no config.json" in err


def test_overrides_apply_and_are_blamed(tmp_path, capsys):
    path = job(tmp_path)
    assert check(capsys, path, "--set", "model.name=mini")[0] == 0
    rc, _, err = check(capsys, path, "--set", "model.name=../nowhere")
    assert rc == 2 and err.startswith(f"error: {path} (--set model.name=../nowhere): model.name: ")


def space(tmp_path, **keys) -> Path:
    job(tmp_path, "base.yaml")
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": "base.yaml", "output": {"dir": str(tmp_path / "sweeps")},
                                    "parameters": {"optimizer.name": {"distribution": "grid",
                                                                      "values": ["lamb", "adamw"]}}, **keys}))
    return path


def test_a_space_is_checked_at_every_combination(tmp_path, capsys):
    path = space(tmp_path)
    rc, out, _ = check(capsys, path)
    assert rc == 0 and out.startswith(f"OK {path} (search space: 2 trials, 2 combinations checked")
    bad = space(tmp_path, parameters={"optimizer.args": {"distribution": "grid", "values": [{}, {"momentum": 0.9}]}})
    rc, _, err = check(capsys, bad)
    assert rc == 2 and err.startswith(f"error: {bad}: parameters.optimizer.args: ") and "momentum" in err, err
    rc, _, err = check(capsys, path, "--set", "set.model.name=./nope")
    assert rc == 2 and err.startswith(f"error: {path} (--set set.model.name=./nope): set.model.name: "), err


def test_output_folder_must_be_creatable(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    path = job(tmp_path, output={"dir": str(tmp_path / "a_file" / "runs")})
    rc, _, err = check(capsys, path)
    assert rc == 2 and "output.dir" in err and "is a file, not a folder" in err
    assert check(capsys, job(tmp_path, output={"dir": "s3://bucket/runs"}))[0] == 0  # not contacted


def test_missing_file_and_bad_yaml(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("name: [\n")
    rc, _, err = check(capsys, tmp_path / "missing.yaml", tmp_path / "bad.yaml")
    assert rc == 2 and "missing.yaml: no such file" in err and "bad.yaml: line" in err
