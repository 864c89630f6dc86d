"""The bounded wait for a run's workers: how many of Ray Train's attempts, and the message."""
from types import SimpleNamespace

import pytest

from scaling_study.train import placement


@pytest.mark.parametrize("timeout_s, attempt, limit", [(600, "60", 9), (61, "60", 1), (60, "60", 0),
                                                        (5, "60", 0), (5, "2", 2), (600, None, 9),
                                                        (600, "nonsense", 9), (600, "-1", 9)])
def test_the_controller_retries_as_many_attempts_as_fit_in_the_timeout(monkeypatch, timeout_s, attempt, limit):
    if attempt is None:
        monkeypatch.delenv(placement.START_TIMEOUT_ENV, raising=False)
    else:
        monkeypatch.setenv(placement.START_TIMEOUT_ENV, attempt)
    assert placement.controller_failure_limit(timeout_s) == limit


def test_the_message_lists_what_holds_the_cluster():
    table = {"aaaaaaaaaaaaaaaa": {"state": "CREATED", "bundles": {0: {"CPU": 1.0}}},
             "bbbbbbbbbbbbbbbb": {"state": "PENDING", "bundles": {0: {"CPU": 1.0}, 1: {"CPU": 1.0}}},
             "cccccccccccccccc": {"state": "REMOVED", "bundles": {0: {"CPU": 1.0}}}}
    lines = placement.held_by(table)
    assert lines == ["  placement group aaaaaaaaaaaa (CREATED): {CPU 1}",
                     "  placement group bbbbbbbbbbbb (PENDING): {CPU 1} + {CPU 1}"]
    assert placement.held_by({}) == ["  no placement group holds resources (other tasks or actors do)"]
    many = {f"{i:016d}": {"state": "CREATED", "bundles": {0: {"CPU": 0.1}}} for i in range(20)}
    assert placement.held_by(many)[-1] == "  ... and 12 more placement groups"


def test_only_a_placement_timeout_is_explained():
    assert placement.explain(None, None) is None
    assert placement.explain(None, RuntimeError("boom")) is None
    assert not placement.is_placement_timeout(SimpleNamespace(controller_failure=ValueError("x")))


@pytest.mark.parametrize("value", [0, -1, float("inf"), "soon"])
def test_the_timeout_is_a_checked_job_key(tmp_path, value):
    from conftest import tiny_job_data
    from scaling_study.config import job_from_dict
    from scaling_study.errors import UserError

    with pytest.raises(UserError, match="scaling.placement_timeout_s"):
        job_from_dict(tiny_job_data(tmp_path, scaling={"placement_timeout_s": value}))
