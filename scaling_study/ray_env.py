"""Starting or joining Ray, and checking that a run fits the cluster before it waits forever."""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from scaling_study.errors import UserError
from scaling_study.train.placement import START_TIMEOUT_ENV

# Workers build tokenizers in each process; their thread pool would warn after fork.
WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false"}
PREEMPTION_WATCHER = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
# How often Ray Train's controller polls its workers (default 2 s). A worker's `ray.train.report`
# waits until the controller has taken its previous report (a queue of one), so evaluations less
# than 2 s apart stall training, and a run's end is noticed up to 2 s late. On the local Ray the
# polls are cheap calls between processes of one machine: 0.2 s makes a 60-step run of
# jobs/sweep_base_tiny.yaml 0.81 of the wall time (docs/benchmarks.md).
HEALTH_CHECK_INTERVAL = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
API_SERVER_ADDRESS = "RAY_API_SERVER_ADDRESS"
LOCAL_HEALTH_CHECK_INTERVAL_S = "0.2"
# What the embedded local Ray's own processes (GCS, raylet, dashboard, its agent, every worker's
# core worker) leave out: each reads these from its environment when it starts, so they are set
# around `ray.init` (a user's own value wins). Both are environment switches, no private name:
# RAY_USAGE_STATS_ENABLED is Ray's documented opt-out, RAY_enable_metrics_collection the
# environment form of Ray's `enable_metrics_collection` setting, which each Ray process reads.
# - Metrics export: every process records Ray's metrics and the dashboard agent exports them for a
#   Prometheus that nothing runs here; off, the agent took 0.5 instead of 1.1 % of a core while 2
#   workers trained, and all of Ray's processes 5.6 instead of 6.2 % on an idle local Ray. Small:
#   Ray's share while 2 workers train is 12-16 % of a core, spread over a dozen processes, and
#   `bench train --compare-ray-quiet` on a quiet machine gave 0.997x the samples/s of Ray's
#   defaults over 3 rounds: no effect in throughput (docs/benchmarks.md).
# - Usage stats: the dashboard would report to Ray's usage server once an hour; nothing to send
#   from a local study, and offline machines only see the attempt fail. It costs no measurable CPU.
# Kept: the dashboard (Ray Train's placement-group cleaner polls the state API through it, once
# a second per run), the log monitor (it carries the workers' output to this console), and
# Ray's event and task reporting (the state API answers from them).
LEAN_LOCAL_RAY = {"RAY_enable_metrics_collection": "0", "RAY_USAGE_STATS_ENABLED": "0"}
TOKEN_SOURCES = "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
"""Where Ray (and so this project) looks for a cluster's token, in this order."""
# `ray.init(address=...)` retries a GCS that is not there for more than five minutes; a plain TCP
# connect to the address answers within this many seconds (at once when the port is closed).
PROBE_TIMEOUT_S = 10.0


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = True,
               lean: bool = True) -> None:
    """Join the cluster at `address` (or $RAY_ADDRESS), or start an embedded local Ray on loopback;
    `lean`: that local Ray without the services nothing here reads (`LEAN_LOCAL_RAY`); False
    starts it with Ray's own defaults for them (what `bench train --compare-ray-quiet` compares)."""
    import ray
    from ray.exceptions import AuthenticationError

    from scaling_study import compat

    if ray.is_initialized():
        return
    where = f"--address {address}" if address else f"$RAY_ADDRESS={os.environ.get('RAY_ADDRESS')}"
    address = address or os.environ.get("RAY_ADDRESS") or None
    env = dict(WORKER_ENV)
    # Ray Train's controllers read their placement attempt's length from their own environment.
    if START_TIMEOUT_ENV in os.environ:
        env[START_TIMEOUT_ENV] = os.environ[START_TIMEOUT_ENV]
    if not address:
        # One local node is never drained, so Ray Train's preemption watcher (an actor per run,
        # polling every 5 s, which logs an error about its constructor arguments at start) has
        # nothing to watch here; clusters keep it. The controller polls its workers more often
        # (see HEALTH_CHECK_INTERVAL). A value the user set wins, for both.
        env[PREEMPTION_WATCHER] = os.environ.get(PREEMPTION_WATCHER, "0")
        env[HEALTH_CHECK_INTERVAL] = os.environ.get(HEALTH_CHECK_INTERVAL, LOCAL_HEALTH_CHECK_INTERVAL_S)
        # Ray's state API (which Ray Train's placement-group cleaner calls to free a stopped run's
        # workers) looks for "the" local Ray; with two on one machine it finds several, gives up,
        # and the next run waits forever for resources. Point it at this Ray's own dashboard.
        dashboard_port = _free_port()
        env[API_SERVER_ADDRESS] = f"http://127.0.0.1:{dashboard_port}"
    kwargs = dict(log_to_driver=True, configure_logging=True, logging_level="WARNING" if quiet else "INFO",
                  runtime_env={"env_vars": env})
    if address:
        _probe(address, where)
        token = compat.use_cluster_token()  # as Ray's CLI: the cluster's token where one is given
        try:
            ray.init(address=address, **kwargs)
        except AuthenticationError as exc:
            raise UserError(f"{where}: {refused(token, exc)}") from None
        except (ConnectionError, RuntimeError) as exc:
            # Something listens there (the probe connected): a Ray that refused us, which with
            # Ray 2.60's token authentication is a missing or wrong token.
            raise UserError(f"{where}: {refused(token, exc)}") from None
    else:
        # The dashboard (on loopback) serves Ray's state API, which Ray Train's placement-group
        # cleaner polls; without it, that cleaner logs a warning every second. The node itself
        # registers under this machine's interface address whatever we ask (Ray resolves
        # 127.0.0.1 to it); that traffic stays on this machine. address="local": a Ray of our own
        # even where another is running here (without an address Ray joins the one it finds).
        with _environ(LEAN_LOCAL_RAY if lean else {}):
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                     dashboard_port=dashboard_port, **kwargs)


def refused(token: bool, exc: BaseException) -> str:
    """Why a cluster that listens refused `ray.init`, for a user: which token to give."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if token:
        return (f"the Ray cluster there refused the connection ({first}) although this process gave it a "
                f"token ({TOKEN_SOURCES}): check that it is the cluster's token (`ray get-auth-token` on its head)")
    return (f"the Ray cluster there refused the connection ({first}). Ray clusters use token authentication "
            f"where the head has a token: give its token through {TOKEN_SOURCES} (`ray get-auth-token` on "
            "the head prints it), as for Ray's own CLI; or start the head with RAY_AUTH_MODE=disabled")


@contextmanager
def _environ(defaults: dict[str, str]) -> Iterator[None]:
    """This process's environment with `defaults` where it has no value of its own, restored after
    (the processes Ray starts meanwhile inherit it; nothing else here sees it)."""
    added = {name: value for name, value in defaults.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _free_port() -> int:
    """A TCP port free on loopback now (the OS's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _host_port(address: str) -> tuple[str, int] | None:
    """`(host, port)` of a `HOST:PORT` or `ray://HOST:PORT` address; None for `auto`, `local` and
    anything else Ray resolves itself."""
    scheme, sep, rest = address.partition("://")
    if sep and scheme != "ray":
        return None
    host, sep, port = (rest if sep else address).rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _probe(address: str, where: str) -> None:
    """Raise a UserError, naming `where` the address came from, when nothing listens at `address`
    (Ray would retry for minutes)."""
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        host, port = target
        flag = "--ray-client-server-port" if address.startswith("ray://") else "--port"
        raise UserError(f"{where}: no Ray cluster listens at {host}:{port} "
                        f"({exc.strerror or exc}). Start one there with `ray start --head {flag} {port}`, "
                        "correct the host and port, or leave --address out to run on a local Ray") from None


def check_fits(num_workers: int, per_worker: dict[str, float], key: str = "scaling") -> None:
    """Raise a UserError when the cluster can never hold `num_workers` workers of `per_worker`."""
    import ray

    total = ray.cluster_resources()
    for name, amount in per_worker.items():
        need = amount * max(1, num_workers)
        have = total.get(name, 0.0)
        if amount and need > have + 1e-9:
            raise UserError(f"{key}: {max(1, num_workers)} workers x {amount:g} {name} = {need:g} {name}, "
                            f"but the cluster has {have:g}; lower {key}.num_workers or the per-worker "
                            f"resources (valid here: at most {int(have // amount)} workers)")
