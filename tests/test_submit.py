"""Job submission without a cluster: what `submit` would send, and what it refuses to send."""
import shlex
import socket
from pathlib import Path

import pytest
import yaml

from scaling_study.cli import build_parser
from scaling_study.errors import ConfigError, UserError
from scaling_study.tune import submit as sub

ROOT = Path(__file__).resolve().parents[1]


def test_a_search_space_becomes_a_sweep_on_the_cluster(tmp_path):
    p = sub.plan(ROOT / "search_spaces" / "weak_scaling_small.yaml", overrides=["study.mode=strong"],
                 storage=str(tmp_path / "shared"))
    assert (p.kind, p.name, p.file, p.storage) == ("sweep", "weak_scaling_small",
                                                   "search_spaces/weak_scaling_small.yaml", str(tmp_path / "shared"))
    assert shlex.split(p.entrypoint) == ["python", "-m", "scaling_study.cli", "sweep", p.file, "--address", "auto",
                                         "--set", "study.mode=strong", "--set", f"output.dir={tmp_path / 'shared'}"]
    assert p.metadata == {"scaling_study": "sweep", "name": "weak_scaling_small", "file": p.file, "storage": p.storage}


def test_a_job_becomes_a_run_and_storage_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = sub.plan(ROOT / "jobs" / "quickstart.yaml", storage="rel/out")
    assert (p.kind, p.name, p.file) == ("run", "quickstart", "jobs/quickstart.yaml")
    assert p.storage == str(tmp_path / "rel" / "out")
    assert shlex.split(p.entrypoint)[3:5] == ["run", "jobs/quickstart.yaml"]


def test_storage_is_a_folder_every_node_mounts(tmp_path):
    p = sub.plan(ROOT / "jobs" / "quickstart.yaml", storage=f"file://{tmp_path}/shared")
    assert p.storage == str(tmp_path / "shared") and shlex.split(p.entrypoint)[-1] == f"output.dir={tmp_path}/shared"
    p = sub.plan(ROOT / "jobs" / "quickstart.yaml", storage="s3://bucket/runs?region=eu-west-1")
    assert p.storage == "s3://bucket/runs?region=eu-west-1"  # an object store the nodes reach, kept as given
    assert shlex.split(p.entrypoint)[-1] == "output.dir=s3://bucket/runs?region=eu-west-1"
    with pytest.raises(UserError, match=r"--storage 'http://host/runs': http:// is not a file system .*s3://bucket/results"):
        sub.plan(ROOT / "jobs" / "quickstart.yaml", storage="http://host/runs")


def test_a_bad_file_never_reaches_the_cluster(monkeypatch):
    monkeypatch.setattr(sub, "connect", lambda address=None: pytest.fail("connected with a bad file"))
    with pytest.raises(ConfigError, match=r"weak_scaling_small.yaml \(--set study.workers=\[0\]\): study.workers"):
        sub.submit(ROOT / "search_spaces" / "weak_scaling_small.yaml", "http://127.0.0.1:1",
                   overrides=["study.workers=[0]"])
    with pytest.raises(ConfigError, match=r"quickstart.yaml \(--set train.stepz=1\): train.stepz: unknown key"):
        sub.submit(ROOT / "jobs" / "quickstart.yaml", "http://127.0.0.1:1", overrides=["train.stepz=1"])


def test_files_outside_the_project_are_refused(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text((ROOT / "jobs" / "quickstart.yaml").read_text())
    with pytest.raises(UserError, match="is outside the project folder"):
        sub.plan(path)


def test_data_in_an_unshipped_folder_is_refused(tmp_path):
    (tmp_path / "jobs").mkdir()
    job = yaml.safe_load((ROOT / "jobs" / "quickstart.yaml").read_text())
    del job["data"]["synth"]
    job["data"].update(train="data/squad/train.json", dev="/shared/squad/dev.json")
    (tmp_path / "jobs" / "real.yaml").write_text(yaml.safe_dump(job))
    with pytest.raises(ConfigError, match=r"jobs/real.yaml: data.train: 'data/squad/train.json' is not in what the cluster"):
        sub.plan(tmp_path / "jobs" / "real.yaml", root=tmp_path)
    job["data"]["train"] = "../elsewhere/train.json"
    (tmp_path / "jobs" / "real.yaml").write_text(yaml.safe_dump(job))
    with pytest.raises(ConfigError, match=r"data.train: '../elsewhere/train.json' is not in what the cluster"):
        sub.plan(tmp_path / "jobs" / "real.yaml", root=tmp_path)


@pytest.mark.parametrize("path, shipped", [
    ("data", False), ("data/synth/train.json", False), (".venv", False), (".git", False), ("runs/x", False),
    ("sweeps/lamb/records.csv", False), ("reports/weak/dashboard.html", False),
    ("scaling_study/data/synth.py", True), ("scaling_study/tune/space.py", True), ("jobs/quickstart.yaml", True),
    ("search_spaces/weak_scaling.yaml", True), ("reports/example/tables.csv", True),
])
def test_working_dir_excludes(path, shipped):
    assert sub.excluded(ROOT / path) is not shipped


def test_an_unreachable_cluster_is_a_clear_error():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"http://127.0.0.1:{port}"
    with pytest.raises(UserError, match=rf"--address {address}: no Ray Job Submission API answers there.*ray start --head"):
        sub.connect(address)


def test_default_address_follows_rays_order(monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert sub.default_address() == "http://127.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.1:8265")
    assert sub.default_address() == "http://10.0.0.1:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://10.0.0.2:8265")
    assert sub.default_address() == "http://10.0.0.2:8265"


def test_command_line():
    parser = build_parser()
    args = parser.parse_args(["submit", "search_spaces/weak_scaling.yaml", "--set", "study.mode=strong",
                              "--storage", "s3://b/x", "--wait", "--address", "http://h:8265"])
    assert (args.file, args.overrides, args.storage, args.wait, args.address) == (
        "search_spaces/weak_scaling.yaml", ["study.mode=strong"], "s3://b/x", True, "http://h:8265")
    args = parser.parse_args(["jobs", "logs", "abc", "--follow"])
    assert (args.jobs_command, args.job_id, args.follow, args.address) == ("logs", "abc", True, None)
    assert parser.parse_args(["jobs", "list"]).jobs_command == "list"
    with pytest.raises(SystemExit):
        parser.parse_args(["jobs", "stop"])  # a job id is required


class FakeClient:
    """Records what `submit` sends; refuses the first `refusals` submissions as a just-started cluster does."""

    def __init__(self, refusals=0, reason="500: No available agent to submit job, please try again later."):
        self.calls, self.refusals, self.reason = [], refusals, reason

    def submit_job(self, **kwargs):
        self.calls.append(kwargs)
        if len(self.calls) <= self.refusals:
            raise RuntimeError(f"Request failed with status code {self.reason}")


def test_submit_sends_the_project_as_working_dir(monkeypatch, tmp_path):
    client = FakeClient(refusals=1)
    monkeypatch.setattr(sub, "connect", lambda address=None: client)
    monkeypatch.setattr(sub.time, "sleep", lambda s: None)
    lines = []
    job_id = sub.submit(ROOT / "search_spaces" / "lamb_lr_batch_small.yaml", "http://h:8265",
                        storage=str(tmp_path), out=lines.append)
    assert len(client.calls) == 2 and client.calls[0] == client.calls[1]  # retried once, unchanged
    sent = client.calls[-1]
    assert sent["submission_id"] == job_id and job_id.startswith("scaling-study-sweep-lamb_lr_batch_small-")
    assert sent["runtime_env"] == {"working_dir": str(ROOT), "excludes": sub.EXCLUDES}
    assert sent["entrypoint_num_cpus"] == 0 and sent["metadata"]["scaling_study"] == "sweep"
    assert "search_spaces/lamb_lr_batch_small.yaml is a search space" in lines[0] and job_id in lines[0]


def test_other_refusals_are_not_retried(monkeypatch):
    client = FakeClient(refusals=5, reason="400: bad runtime_env")
    monkeypatch.setattr(sub, "connect", lambda address=None: client)
    with pytest.raises(UserError, match="the cluster refused the job: .*bad runtime_env"):
        sub.submit(ROOT / "jobs" / "quickstart.yaml", "http://h:8265", storage="/tmp/x")
    assert len(client.calls) == 1
