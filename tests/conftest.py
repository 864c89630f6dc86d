"""Shared fixtures: one small local Ray per test module that needs it, stopped afterwards."""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")


@pytest.fixture(scope="module")
def local_ray():
    """An embedded Ray with 2 CPUs on loopback; shut down when the module's tests are done."""
    import ray

    from scaling_study.ray_env import ensure_ray

    if ray.is_initialized():
        ray.shutdown()
    ensure_ray(None, num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """Small generated SQuAD-format data and text corpus, written once per test session."""
    from scaling_study.data.synth import write_synth

    out = tmp_path_factory.mktemp("synth")
    write_synth(out, n_train=400, n_dev=40, difficulty=0.0, seed=0, corpus_lines=300)
    return out
