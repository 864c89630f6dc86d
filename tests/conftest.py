"""Shared fixtures: a small local Ray shared by the test modules that need it, stopped at the end; an S3
server; generated data; and, from tests/fixtures/service.py, the service's results root."""
import logging
import os
import sys
import time

import pytest

pytest_plugins = ["fixtures.service"]  # the service's results root (`live_root`)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")


def _triton_interpreter_without_a_gpu() -> None:
    """Triton (the optimizers' CUDA kernels) runs them on CPU tensors in its interpreter only if
    TRITON_INTERPRET is set before its first import, which any test may trigger (torch imports it
    where it is installed): set it here, before the tests are collected, where there is no GPU."""
    import importlib.util

    if "TRITON_INTERPRET" in os.environ or importlib.util.find_spec("triton") is None:
        return
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


_triton_interpreter_without_a_gpu()


def pytest_addoption(parser):
    parser.addoption("--extended", action="store_true",
                     help="also run the long variants of end-to-end tests (marker `extended`)")


LONGEST_FIRST = ("test_sweep_ray", "test_service_browser", "test_train_ray", "test_submit_cluster", "test_multinode",
                 "test_service_pages", "test_gpu_check", "test_placement_leak", "test_export", "test_object_store",
                 "test_service_steer", "test_service_local_ray")
"""The modules that take longest (each 20 s to 3 minutes of the suite; docs/benchmarks.md), longest
first. scripts/test.sh runs the suite on two pytest processes with `--dist loadscope`: each
module runs whole in one of them (its module-scoped fixtures, a Ray, a cluster, a browser, start
once), in this order, every other module after them in collection order (xdist's reordering by
module size is turned off): a process that picks up a 3-minute module last finishes minutes after
the other."""


def pytest_collection_modifyitems(config, items):
    """Tests marked `extended` are skipped unless --extended: they keep the suite under 10 minutes.
    The longest modules come first (`LONGEST_FIRST`)."""
    extended = config.getoption("--extended")
    skip = pytest.mark.skip(reason="a long variant of an end-to-end test: run with --extended")
    for item in items:
        if "extended" in item.keywords and not extended:
            item.add_marker(skip)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))  # stable: collection order within


_shared = {"address": None, "settings": None}  # the local Ray `local_ray` started in this process


def _ray_settings() -> tuple:
    """What a local Ray takes from this process's environment when it starts, and keeps: a module
    that changes it (test_placement_leak's 2 s placement attempts) gets a Ray of its own."""
    from scaling_study.train.placement import START_TIMEOUT_ENV

    return (os.environ.get(START_TIMEOUT_ENV),)


def _shared_ray():
    """The `ray` module while the shared local Ray is the one it is connected to, else None."""
    ray = sys.modules.get("ray")
    if _shared["address"] and ray is not None and ray.is_initialized() \
            and ray.get_runtime_context().gcs_address == _shared["address"]:
        return ray
    return None


def _left_behind(ray, timeout_s: float = 30.0) -> str:
    """What holds `ray`'s CPUs or placement groups once a module's tests are done ('' for nothing),
    after up to `timeout_s` for what was stopped to be released."""
    deadline = time.monotonic() + timeout_s
    while True:
        total, free = ray.cluster_resources().get("CPU", 0), ray.available_resources().get("CPU", 0)
        groups = [f"{info['name'] or pg_id} ({info['state']}, {list(info['bundles'].values())})"
                  for pg_id, info in ray.util.placement_group_table().items() if info["state"] != "REMOVED"]
        if free == total and not groups:
            return ""
        if time.monotonic() > deadline:
            return f"{total - free:g} of {total:g} CPUs in use and placement groups {groups or 'none'}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def local_ray():
    """An embedded Ray with 2 CPUs on loopback, shared by the modules that run one after another in
    this process and need it, as long as each leaves it as it found it (`pytest_runtest_teardown`);
    stopped before a test that does not need it (an idle Ray still takes CPU time) and at the end."""
    import ray

    from scaling_study.ray_env import ensure_ray

    if not (_shared_ray() and _shared["settings"] == _ray_settings()):
        if ray.is_initialized():
            ray.shutdown()
        ensure_ray(None, num_cpus=2)
        _shared.update(address=ray.get_runtime_context().gcs_address, settings=_ray_settings())
    return ray


@pytest.hookimpl(trylast=True)  # after the module's own fixtures have been torn down
def pytest_runtest_teardown(item, nextitem):
    """At the end of a module that used the shared Ray: every CPU must be free and every placement
    group removed, or the module fails naming what it left (and the Ray is stopped, so that the
    next module gets a fresh one). The Ray is also stopped when the next test does not need it."""
    ray = _shared_ray()
    if ray is None or (nextitem is not None and getattr(nextitem, "module", None) is item.module):
        return
    left = _left_behind(ray)
    if left or nextitem is None or "local_ray" not in getattr(nextitem, "fixturenames", ()):
        ray.shutdown()
        _shared["address"] = None
    if left:
        pytest.fail(f"{item.module.__name__}'s tests left the shared local Ray with {left}", pytrace=False)


def pytest_sessionfinish(session):
    """Stop the Ray a test left running."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


S3_BUCKET = "results"


def files_under(loc) -> set[str]:
    """Every file under `loc` (a storage.Loc: a folder or a bucket prefix), as paths relative to it."""
    import pyarrow.fs as pafs

    base = loc.fs_path.rstrip("/")
    infos = loc.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return {i.path[len(base) + 1:] for i in infos if i.type == pafs.FileType.File}


@pytest.fixture(scope="module")
def s3():
    """An S3 server on 127.0.0.1 with one bucket; its endpoint and keys in the environment (as a
    user's would be) so that Ray's processes started afterwards reach it too."""
    import boto3
    from moto.server import ThreadedMotoServer

    from scaling_study import storage

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    storage._filesystem.cache_clear()
    boto3.client("s3").create_bucket(Bucket=S3_BUCKET)
    yield f"s3://{S3_BUCKET}"
    storage._filesystem.cache_clear()
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    server.stop()


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """Small generated SQuAD-format data and text corpus, written once per test session."""
    from scaling_study.data.synth import write_synth

    out = tmp_path_factory.mktemp("synth")
    write_synth(out, n_train=400, n_dev=40, difficulty=0.0, seed=0, corpus_lines=300)
    return out


def tiny_job_data(synth_dir, **sections) -> dict:
    """A squad job on a tiny BERT and the session's generated data, as the YAML's dict; each
    keyword replaces a top-level key or, for a dict, updates that section."""
    data = {
        "name": "tiny", "task": "squad",
        "model": {"name": "tiny", "max_seq_length": 64},
        "data": {"train": str(synth_dir / "train.json"), "dev": str(synth_dir / "dev.json"),
                 "doc_stride": 16, "max_query_length": 24, "max_eval_examples": 24},
        "optimizer": {"name": "lamb", "lr": 0.01},
        "schedule": {"name": "constant", "warmup": 0.0},
        "scaling": {"num_workers": 2},
        "train": {"per_worker_batch": 4, "global_batch": 8, "steps": 8},
        "eval": {"every_steps": 4, "target": {"metric": "f1", "value": 101.0}},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data
