"""Every shim of scaling_study.compat still does its job on the installed Ray.

An upgrade of Ray that moves or reshapes a private name fails here, naming the shim and the
installed and checked Ray versions, before it fails a sweep.
"""
import ast
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from scaling_study import compat

PACKAGE = Path(compat.__file__).parent


@contextmanager
def shim(name):
    """Fail with the shim's name and both Ray versions when it no longer holds."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - any failure of a shim is the same news
        pytest.fail(f"scaling_study.compat.{name} no longer holds on Ray {ray.__version__} "
                    f"(checked against Ray {compat.CHECKED_RAY}): {type(exc).__name__}: {exc}")


def asha():
    return ASHAScheduler(metric="f1", mode="max", time_attr="samples", max_t=9, grace_period=1,
                         reduction_factor=3)


def trial(i):
    return SimpleNamespace(trial_id=f"t{i}")


def test_ray_train_report_logger_is_the_one_ray_train_reports_with(monkeypatch):
    with shim("ray_train_report_logger"):
        logger = compat.ray_train_report_logger()
        assert logger is not logging.getLogger() and not logger.name.startswith("ray.train")
        assert logger.name.endswith("context.py")  # named by its file, so LoggingConfig misses it
        monkeypatch.setattr(logger, "level", logging.INFO)
        compat.quiet_ray_train_report_logger()
        assert logger.level == logging.WARNING


def test_asha_rungs_are_the_schedulers_own():
    with shim("asha_rungs"):
        s = asha()
        rungs = compat.asha_rungs(s)
        assert [m for m, _ in rungs[0]] == [9.0, 3.0, 1.0]  # milestones of rf 3 from 1 to 9, highest first
        for i, f1 in enumerate([50.0, 60.0]):
            s.on_trial_add(None, trial(i))
            s.on_trial_result(None, trial(i), {"samples": 1, "f1": f1})
        assert rungs[0][-1][1] == {"t0": 50.0, "t1": 60.0}
        rungs[0][-1][1].update({"x": 90.0, "y": 95.0})  # written rungs change the cut-off
        s.on_trial_add(None, trial(2))
        assert s.on_trial_result(None, trial(2), {"samples": 1, "f1": 70.0}) == TrialScheduler.STOP


def test_asha_trial_brackets_follow_the_trials():
    with shim("asha_trial_brackets/asha_assign_bracket"):
        s = ASHAScheduler(metric="f1", mode="max", max_t=9, grace_period=1, reduction_factor=3, brackets=2)
        s.on_trial_add(None, trial(0))
        assert set(compat.asha_trial_brackets(s)) == {"t0"}
        compat.asha_assign_bracket(s, "t0", 1)
        assert compat.asha_trial_brackets(s) == {"t0": 1}
        s.on_trial_complete(None, trial(0), {"training_iteration": 1, "f1": 1.0})
        assert compat.asha_trial_brackets(s) == {}


def test_asha_num_stopped_counts_stops():
    with shim("asha_num_stopped"):
        s = asha()
        for i, f1 in enumerate([50.0, 60.0, 70.0, 10.0]):
            s.on_trial_add(None, trial(i))
            s.on_trial_result(None, trial(i), {"samples": 1, "f1": f1})
        assert compat.asha_num_stopped(s) == 1
        assert compat.asha_num_stopped(s, 5) == 5 and "num_stopped=5" in s.debug_string()


def test_asha_settings_include_those_set_by_tune():
    with shim("asha_settings"):
        s = ASHAScheduler(time_attr="samples", max_t=9)
        s.set_search_properties("f1", "max")  # what Tune does with TuneConfig(metric, mode)
        assert compat.asha_settings(s) == {"metric": "f1", "mode": "max", "time_attr": "samples"}


def test_train_v2_is_rays_default():
    """ensure_ray no longer sets RAY_TRAIN_V2_ENABLED=1: the installed Ray must default to V2."""
    if "RAY_TRAIN_V2_ENABLED" in os.environ:
        pytest.skip("RAY_TRAIN_V2_ENABLED is set here; the test is about Ray's default")
    with shim("(none: Ray Train V2 as Ray's default)"):
        from ray.train.torch import TorchTrainer

        assert TorchTrainer.__module__.startswith("ray.train.v2."), TorchTrainer.__module__


def test_a_moved_name_says_which_shim_and_which_ray():
    with pytest.raises(compat.CompatError) as err:
        compat.asha_rungs(SimpleNamespace())  # a scheduler without Ray 2.60's attributes
    message = str(err.value)
    assert "scaling_study.compat.asha_rungs" in message and "_brackets" in message
    assert f"installed Ray {ray.__version__}" in message and f"Ray {compat.CHECKED_RAY}" in message


def test_a_moved_logger_only_warns(monkeypatch):
    def moved():
        raise compat.CompatError("scaling_study.compat.ray_train_report_logger: gone")

    monkeypatch.setattr(compat, "ray_train_report_logger", moved)
    with pytest.warns(RuntimeWarning, match="ray_train_report_logger: gone"):
        compat.quiet_ray_train_report_logger()


# torch's `_foreach_*` kernels are the documented multi-tensor ops optimizers are built from.
ALLOWED_PREFIXES = ("_foreach_",)


def _private_names(tree: ast.AST):
    """(line, dotted name) of every private Ray or torch name a module imports or reads."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield from ((node.lineno, f"{node.module}.{a.name}") for a in node.names)
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            yield node.lineno, f"{node.value.id}.{node.attr}"


def test_no_private_ray_or_torch_name_outside_compat():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "compat.py":
            continue
        for line, name in _private_names(ast.parse(path.read_text())):
            parts = name.split(".")
            private = [p for p in parts[1:] if p.startswith("_") and not p.endswith("__")
                       and not p.startswith(ALLOWED_PREFIXES)]
            if parts[0] in ("ray", "torch") and private:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} {name}")
    assert not offenders, "private Ray/torch names outside scaling_study/compat.py: " + ", ".join(offenders)


def test_worker_groups_hand_their_placement_group_to_the_cleaner_when_they_create_it():
    from ray.train.v2._internal.execution.worker_group.worker_group import WorkerGroup

    with shim("register_worker_group_placement_groups"):
        assert compat.register_worker_group_placement_groups()
        patched = WorkerGroup._create_placement_group
        assert patched._registers_early
        compat.register_worker_group_placement_groups()  # idempotent: not wrapped twice
        assert WorkerGroup._create_placement_group is patched


def test_a_worker_group_start_timeout_is_recognised():
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

    with shim("is_worker_group_start_timeout"):
        assert compat.is_worker_group_start_timeout(WorkerGroupStartupTimeoutError(num_workers=2))
        assert not compat.is_worker_group_start_timeout(RuntimeError("other"))
        assert not compat.is_worker_group_start_timeout(None)


def test_the_cluster_token_is_used_as_rays_cli_uses_it(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # an explicit mode is respected, as by Ray's CLI
    with shim("use_cluster_token"):
        assert compat.use_cluster_token() is False
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with shim("use_cluster_token"):
        assert compat.use_cluster_token() is True


def test_an_elastic_runs_wait_for_its_fewest_workers_ends_after_the_timeout(monkeypatch):
    import time

    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError
    from ray.train.v2._internal.execution.controller.state import InitializingState, RunningState

    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    limit = compat.elastic_wait_limit(timeout_s=10, min_workers=2)
    waiting, running = InitializingState(), RunningState()
    limit.after_controller_state_update(None, waiting)
    now[0] = 109.0
    limit.after_controller_state_update(waiting, waiting)  # within the bound
    limit.after_controller_state_update(waiting, running)  # the group started: the clock resets
    now[0] = 115.0
    limit.after_controller_state_update(running, waiting)  # waiting again (a lost node)
    now[0] = 124.0
    limit.after_controller_state_update(waiting, waiting)
    now[0] = 126.0
    with pytest.raises(WorkerGroupStartupTimeoutError):
        limit.after_controller_state_update(waiting, waiting)
    assert compat.is_worker_group_start_timeout(WorkerGroupStartupTimeoutError(2))
