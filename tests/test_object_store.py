"""Results on an object store: runs and sweeps whose `output.dir` is an s3:// URI, written and read
back through pyarrow.fs (as Ray writes its checkpoints), against a real S3 API served by moto in
this process (no network beyond 127.0.0.1). An ASHA sweep on S3, killed and resumed:
tests/test_sweep_ray.py."""
import json
import os

import pandas as pd
import pytest
import yaml

from conftest import S3_BUCKET as BUCKET, files_under, tiny_job_data
from scaling_study import storage
from scaling_study.config import job_from_dict
from scaling_study.errors import UserError
from scaling_study.storage import Loc


@pytest.fixture(scope="module")
def s3_ray(s3):
    """A local Ray started after `s3`, so that its workers inherit the endpoint and keys."""
    import ray

    from scaling_study.ray_env import ensure_ray

    if ray.is_initialized():
        ray.shutdown()
    ensure_ray(None, num_cpus=2)
    yield ray
    ray.shutdown()


def keys(prefix: str) -> set[str]:
    """Every object under s3://BUCKET/prefix, as paths relative to it."""
    return files_under(Loc(f"s3://{BUCKET}/{prefix}"))


# --- Loc: the file operations results need, on S3 and on a local disk ----------------------------

@pytest.mark.parametrize("where", ["s3", "local"])
def test_loc_writes_reads_and_lists(where, s3, tmp_path):
    root = Loc(f"{s3}/unit" if where == "s3" else str(tmp_path / "unit"))
    run = root / "trials" / "t1"
    assert not (run / "params.json").exists() and root.subdirs() == []
    (run / "params.json").write_text(json.dumps({"a": 1}))
    (root / "trials" / "t0" / "job.yaml").write_text("name: t0\n")
    assert json.loads((run / "params.json").read_text()) == {"a": 1}
    assert (run / "params.json").is_file() and run.is_dir() and not run.is_file()
    assert [d.name for d in (root / "trials").subdirs()] == ["t0", "t1"]
    df = pd.DataFrame({"step": [1, 2], "f1": [0.5, float("nan")], "run_id": ["a", "b"]})
    storage.write_csv(df, root / "records.csv")
    storage.write_parquet(df, root / "records.parquet")
    pd.testing.assert_frame_equal(storage.read_csv(root / "records.csv"), df)
    pd.testing.assert_frame_equal(storage.read_parquet(root / "records.parquet"), df)
    (run / "params.json").write_text("{}")  # replaced whole
    assert (run / "params.json").read_text() == "{}"
    if where == "local":  # nothing but the files themselves (no temporaries left behind)
        assert sorted(p.name for p in (tmp_path / "unit" / "trials" / "t1").iterdir()) == ["params.json"]
    else:
        assert keys("unit") == {"trials/t1/params.json", "trials/t0/job.yaml", "records.csv", "records.parquet"}


def test_loc_names_uris_as_paths_and_keeps_their_query(s3):  # s3: fs_path resolves the bucket there
    loc = Loc("s3://bucket/a/b?region=eu-west-1&scheme=http")
    assert str(loc / "c" / "d.csv") == "s3://bucket/a/b/c/d.csv?region=eu-west-1&scheme=http"
    assert (loc / "d.csv").name == "d.csv" and (loc / "d.csv").suffix == ".csv"
    assert str(loc.parent) == "s3://bucket/a?region=eu-west-1&scheme=http"
    assert str(Loc("gs://b")) == "gs://b" and str(Loc("gs://b/") / "x") == "gs://b/x"
    assert Loc("s3://b/sweep").parent == Loc("s3://b") and Loc("s3://b/sweep").parent.fs_path == "b"
    assert Loc("file:///tmp/x%20y").local.as_posix() == "/tmp/x y"
    with pytest.raises(TypeError, match="not a local path"):
        os.fspath(loc)
    with pytest.raises(ValueError, match="http:// is not a file system"):
        Loc("http://host/x")


def test_a_missing_bucket_is_refused_before_anything_starts(s3, synth_dir, tmp_path, capsys):
    from scaling_study.train.driver import run_job

    job = job_from_dict(tiny_job_data(synth_dir, output={"dir": "s3://no-such-bucket/runs"}))
    with pytest.raises(UserError, match=r"output.dir: s3://no-such-bucket/runs: the bucket 'no-such-bucket' does not exist"):
        run_job(job)
    from scaling_study.cli import main

    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(tiny_job_data(synth_dir)))
    assert main(["run", str(job_file), "--out", "s3://no-such-bucket/runs"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {job_file} (--out s3://no-such-bucket/runs): output.dir: "
                                              "s3://no-such-bucket/runs: the bucket")
    from scaling_study.tune.sweep import run_sweep

    space = tmp_path / "space.yaml"
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_job_data(synth_dir)))
    space.write_text(yaml.safe_dump({"name": "s", "base": str(base), "output": {"dir": "s3://no-such-bucket/sweeps"},
                                     "parameters": {"optimizer.lr": {"distribution": "choice", "values": [0.01]}}}))
    with pytest.raises(UserError, match=rf"{space}: output.dir: s3://no-such-bucket/sweeps: the bucket"):
        run_sweep(str(space))
    # Reading results back: a missing bucket, or a store that does not answer, is said as such.
    assert main(["report", "s3://no-such-bucket/sweeps/s", "--out", str(tmp_path / "r")]) == 2
    assert "results: s3://no-such-bucket/sweeps/s: the bucket 'no-such-bucket' does not exist" in capsys.readouterr().err
    dead = f"{s3}/sweeps/s?endpoint_override=127.0.0.1:9&scheme=http"  # nothing listens on port 9
    assert main(["export", dead, "--metric", "f1", "--out", str(tmp_path / "best.yaml")]) == 2
    assert f"results: {dead} cannot be reached from here" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "best.yaml").exists()


# --- on a real local Ray ---------------------------------------------------------------------------

@pytest.mark.ray
def test_local_mode_on_s3_keeps_its_latest_checkpoint_and_continues_from_it(s3, s3_ray, synth_dir):
    from scaling_study.train.driver import run_job

    data = tiny_job_data(synth_dir, name="local_s3", scaling={"num_workers": 0},
                         train={"per_worker_batch": 4, "global_batch": 4, "steps": 4},
                         eval={"every_steps": 2}, output={"dir": f"{s3}/runs"})
    first = run_job(job_from_dict(data), verbose=False)
    assert list(first.records["step"]) == [2, 4]
    files = keys("runs/local_s3")
    pointer = Loc(f"{s3}/runs/local_s3/checkpoint_local.txt").read_text()
    assert pointer == "checkpoint_local_000000004"
    assert {f.split("/")[0] for f in files if f.startswith("checkpoint_local_")} == {pointer}  # the older one is gone
    data["train"]["steps"] = 6
    second = run_job(job_from_dict(data), verbose=False)
    assert list(second.records["step"]) == [2, 4, 6]  # continued from step 4, not started again
    assert Loc(f"{s3}/runs/local_s3/checkpoint_local.txt").read_text() == "checkpoint_local_000000006"
