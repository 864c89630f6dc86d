"""`ensure_ray`'s runtime environment and its check of --address, without starting Ray
(`ray.init` is replaced)."""
import os

import pytest

from scaling_study import ray_env
from scaling_study.errors import UserError


@pytest.fixture
def init_kwargs(monkeypatch):
    import ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    for var in (ray_env.PREEMPTION_WATCHER, ray_env.HEALTH_CHECK_INTERVAL, "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    return calls


class Listening:
    """Stands in for a cluster at any address: records where `ensure_ray` probed."""

    def __init__(self):
        self.probed = []

    def __call__(self, target, timeout):
        self.probed.append(target)
        return self

    def close(self):
        pass


def test_local_ray_gets_the_local_settings_and_a_users_value_wins(init_kwargs, monkeypatch):
    ray_env.ensure_ray(None)
    assert init_kwargs[-1]["address"] == "local"  # its own Ray, never one that happens to run here
    port = init_kwargs[-1]["dashboard_port"]  # the state API of this Ray, even beside another one
    assert init_kwargs[-1]["runtime_env"]["env_vars"][ray_env.API_SERVER_ADDRESS] == f"http://127.0.0.1:{port}"
    env = init_kwargs[-1]["runtime_env"]["env_vars"]
    assert (env[ray_env.PREEMPTION_WATCHER], env[ray_env.HEALTH_CHECK_INTERVAL]) == ("0", "0.2")
    monkeypatch.setenv(ray_env.HEALTH_CHECK_INTERVAL, "1.5")
    monkeypatch.setenv(ray_env.PREEMPTION_WATCHER, "1")
    ray_env.ensure_ray(None)
    env = init_kwargs[-1]["runtime_env"]["env_vars"]
    assert (env[ray_env.PREEMPTION_WATCHER], env[ray_env.HEALTH_CHECK_INTERVAL]) == ("1", "1.5")


def test_a_cluster_keeps_rays_defaults(init_kwargs, monkeypatch):
    monkeypatch.setattr(ray_env.socket, "create_connection", Listening())
    ray_env.ensure_ray("ray://10.0.0.1:10001")
    env = init_kwargs[-1]["runtime_env"]["env_vars"]
    assert init_kwargs[-1]["address"] == "ray://10.0.0.1:10001"
    assert ray_env.PREEMPTION_WATCHER not in env and ray_env.HEALTH_CHECK_INTERVAL not in env
    assert ray_env.API_SERVER_ADDRESS not in env
    assert env["TOKENIZERS_PARALLELISM"] == "false"


@pytest.mark.timeout(60)
def test_an_address_where_nothing_listens_fails_before_ray_starts(init_kwargs):
    with pytest.raises(UserError, match=r"--address 127.0.0.1:9: no Ray cluster listens at 127.0.0.1:9 "
                                        r"\(.*\)\. Start one there with `ray start --head --port 9`.*leave --address out"):
        ray_env.ensure_ray("127.0.0.1:9")  # the discard port: nothing listens there
    assert init_kwargs == []  # refused before ray.init, which would retry for minutes


def test_the_message_names_ray_address_when_it_came_from_there(init_kwargs, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://127.0.0.1:9")
    with pytest.raises(UserError, match=r"\$RAY_ADDRESS=ray://127.0.0.1:9: no Ray cluster .*--ray-client-server-port 9"):
        ray_env.ensure_ray(None)
    assert init_kwargs == []


@pytest.mark.parametrize("address, probed", [
    ("10.0.0.1:6379", [("10.0.0.1", 6379)]), ("ray://head:10001", [("head", 10001)]),
    ("[::1]:6379", [("::1", 6379)]), ("auto", []), ("local", []),
])
def test_the_probe_goes_where_ray_would_connect(init_kwargs, monkeypatch, address, probed):
    listening = Listening()
    monkeypatch.setattr(ray_env.socket, "create_connection", listening)
    ray_env.ensure_ray(address)
    assert listening.probed == probed and init_kwargs[-1]["address"] == address


@pytest.fixture
def init_environ(init_kwargs, monkeypatch):
    """What each `ray.init` saw of the lean settings in this process's environment, which the
    processes it starts inherit."""
    import ray

    seen = []
    monkeypatch.setattr(ray, "init", lambda **kw: seen.append({k: os.environ.get(k) for k in ray_env.LEAN_LOCAL_RAY}))
    for var in ray_env.LEAN_LOCAL_RAY:
        monkeypatch.delenv(var, raising=False)
    return seen


def test_the_local_rays_processes_start_without_metrics_export_and_usage_stats(init_environ):
    ray_env.ensure_ray(None)
    assert init_environ[-1] == {"RAY_enable_metrics_collection": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    assert not set(ray_env.LEAN_LOCAL_RAY) & set(os.environ)  # only Ray's processes got them
    ray_env.ensure_ray(None, lean=False)  # Ray's own defaults, for the bench's comparison
    assert init_environ[-1] == {"RAY_enable_metrics_collection": None, "RAY_USAGE_STATS_ENABLED": None}


def test_a_users_ray_settings_win_and_stay(init_environ, monkeypatch):
    monkeypatch.setenv("RAY_enable_metrics_collection", "1")
    ray_env.ensure_ray(None)
    assert init_environ[-1] == {"RAY_enable_metrics_collection": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    assert os.environ["RAY_enable_metrics_collection"] == "1"


def test_a_cluster_gets_none_of_the_lean_settings(init_environ, monkeypatch):
    monkeypatch.setattr(ray_env.socket, "create_connection", Listening())
    ray_env.ensure_ray("10.0.0.1:6379")
    assert init_environ[-1] == {"RAY_enable_metrics_collection": None, "RAY_USAGE_STATS_ENABLED": None}
