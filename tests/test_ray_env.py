"""`ensure_ray`'s runtime environment, without starting Ray (`ray.init` is replaced)."""
import pytest

from scaling_study import ray_env


@pytest.fixture
def init_kwargs(monkeypatch):
    import ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    for var in (ray_env.PREEMPTION_WATCHER, ray_env.HEALTH_CHECK_INTERVAL, "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    return calls


def test_local_ray_gets_the_local_settings_and_a_users_value_wins(init_kwargs, monkeypatch):
    ray_env.ensure_ray(None)
    env = init_kwargs[-1]["runtime_env"]["env_vars"]
    assert (env[ray_env.PREEMPTION_WATCHER], env[ray_env.HEALTH_CHECK_INTERVAL]) == ("0", "0.2")
    monkeypatch.setenv(ray_env.HEALTH_CHECK_INTERVAL, "1.5")
    monkeypatch.setenv(ray_env.PREEMPTION_WATCHER, "1")
    ray_env.ensure_ray(None)
    env = init_kwargs[-1]["runtime_env"]["env_vars"]
    assert (env[ray_env.PREEMPTION_WATCHER], env[ray_env.HEALTH_CHECK_INTERVAL]) == ("1", "1.5")


def test_a_cluster_keeps_rays_defaults(init_kwargs):
    ray_env.ensure_ray("ray://10.0.0.1:10001")
    env = init_kwargs[-1]["runtime_env"]["env_vars"]
    assert init_kwargs[-1]["address"] == "ray://10.0.0.1:10001"
    assert ray_env.PREEMPTION_WATCHER not in env and ray_env.HEALTH_CHECK_INTERVAL not in env
    assert env["TOKENIZERS_PARALLELISM"] == "false"
