"""Steering a sweep (tune/steer.py): request files, the Tune stopper that acts on them, and the
status callback, first without Ray, then in a real Tune run that is stopped and resumed."""
import json
import signal
import threading
import time
from types import SimpleNamespace

import pytest

from scaling_study.storage import Loc
from scaling_study.tune import steer


def status(sweep) -> dict:
    return json.loads((Loc(sweep) / steer.STEER_DIR / steer.STATUS_FILE).read_text())


def test_a_trial_request_stops_that_trial_once_and_marks_it(tmp_path):
    stopper = steer.StopRequests(tmp_path, check_every_s=0.0)
    assert not stopper("a", {}) and not stopper.stop_all()
    steer.request_stop(tmp_path, "a")
    assert steer.pending_requests(tmp_path) == (False, {"a"})
    assert not stopper("b", {})
    assert stopper("a", {"samples": 10})
    marker = json.loads((tmp_path / "trials" / "a" / steer.STOPPED_BY_USER).read_text())
    assert marker["trial_id"] == "a" and marker["by"] == "user"
    assert steer.pending_requests(tmp_path) == (False, set())  # consumed
    assert not stopper("a", {})


def test_a_stopper_rereads_requests_at_most_every_interval(tmp_path):
    stopper = steer.StopRequests(tmp_path, check_every_s=3600)
    assert not stopper("a", {})
    steer.request_stop(tmp_path, "a")
    assert not stopper("a", {})  # not looked at again yet
    restored = steer.StopRequests.__new__(steer.StopRequests)
    restored.__setstate__(stopper.__getstate__())  # as Tune restores it: reads afresh
    assert restored("a", {})


def test_a_sweep_request_interrupts_through_tunes_own_signal_handler(tmp_path):
    got = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: got.append("SIGUSR1"))
    try:
        stopper = steer.StopRequests(tmp_path, check_every_s=0.0)
        steer.request_stop(tmp_path)
        assert stopper.stop_all() is False  # Tune ends the run itself, trials stay resumable
        time.sleep(0.05)
        assert got == ["SIGUSR1"]
        assert "stopped_by_user" in status(tmp_path)
        assert steer.pending_requests(tmp_path) == (False, set())
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_without_a_handler_the_sweep_is_ended_by_stop_all(tmp_path):
    stopper = steer.StopRequests(tmp_path, check_every_s=0.0)
    steer.request_stop(tmp_path)
    out = []
    worker = threading.Thread(target=lambda: out.append(stopper.stop_all()))  # not the main thread
    worker.start()
    worker.join()
    assert out == [True]


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden"])
def test_trial_ids_in_requests_are_plain_names(tmp_path, bad):
    with pytest.raises(ValueError):
        steer.request_stop(tmp_path, bad)


def _trial(trial_id, status="RUNNING", **result):
    return SimpleNamespace(trial_id=trial_id, status=status, last_result=result, error_file=None)


def test_the_status_file_follows_the_sweep(tmp_path):
    cb = steer.SweepStatus(tmp_path, {"scheduler": {"name": "asha", "max_t": 100}}, heartbeat_s=0.0)
    cb.setup()
    assert status(tmp_path)["state"] == "running" and status(tmp_path)["info"]["scheduler"]["max_t"] == 100
    a, b, c = _trial("a"), _trial("b"), _trial("c")
    for t in (a, b, c):
        cb.on_trial_start(0, [a, b, c], t)
    cb.on_trial_complete(1, [a, b, c], _trial("a", "TERMINATED", finished=True))
    cb.on_trial_complete(1, [a, b, c], _trial("b", "TERMINATED", finished=False))
    cb.on_trial_error(1, [a, b, c], _trial("c", "ERROR"))
    trials = status(tmp_path)["trials"]
    assert {k: v["state"] for k, v in trials.items()} == {"a": "finished", "b": "stopped", "c": "error"}
    assert trials["c"]["error"]
    beat = status(tmp_path)["heartbeat_at"]
    time.sleep(0.01)
    cb.on_step_begin(2, [])
    assert status(tmp_path)["heartbeat_at"] > beat
    d = _trial("d")
    cb.on_trial_start(1, [a, b, c, d], d)
    cb.on_experiment_end([a, b, c, _trial("d", "TERMINATED")])  # Tune stopped d while ending: interrupted
    assert status(tmp_path)["state"] == "interrupted"
    cb.setup()  # resumed: running again, earlier trial states kept
    assert status(tmp_path)["state"] == "running" and status(tmp_path)["trials"]["a"]["state"] == "finished"
    cb.on_trial_complete(2, [a, b, c, d], _trial("d", "TERMINATED", finished=True))
    cb.on_experiment_end([a, b, c, d])
    assert status(tmp_path)["state"] == "finished"


# --- in a real Tune run -------------------------------------------------------------------------

ITERATIONS = 60


def _make_trainable(iterations: int):
    """A Tune function trainable, built here so that Ray pickles it by value (workers cannot
    import this test module)."""
    def trainable(config, sweep):
        import json as json_
        import time as time_

        from ray import tune

        from scaling_study.storage import Loc as Loc_

        trial = tune.get_context().get_trial_id()
        (Loc_(sweep) / "trials" / trial / "params.json").write_text(json_.dumps(config))
        for i in range(1, iterations + 1):
            tune.report({"samples": i, "score": i * config["x"], "finished": i == iterations})
            time_.sleep(0.1)
    return trainable


def _steer(sweep, done: list):
    """From outside the run: stop the first trial, then (once it is marked) the whole sweep."""
    deadline = time.time() + 120
    trials = sweep / "trials"
    while time.time() < deadline and len(list(trials.glob("*/params.json"))) < 2:
        time.sleep(0.1)
    first = sorted(p.parent.name for p in trials.glob("*/params.json"))[0]
    steer.request_stop(sweep, first)
    while time.time() < deadline and not (trials / first / steer.STOPPED_BY_USER).exists():
        time.sleep(0.1)
    steer.request_stop(sweep)
    done.append(first)


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_tune_stops_a_trial_then_the_sweep_and_a_restore_continues_it(tmp_path, local_ray):
    """The stopper and callback installed as `sweep_hooks` installs them: a requested trial ends
    as stopped by a user, the sweep request interrupts the run (Tune saves its state), and
    `Tuner.restore(resume_unfinished=True)`, what `sweep --resume` calls, finishes the other."""
    from ray import tune

    sweep = tmp_path / "s"
    trainable = tune.with_resources(tune.with_parameters(_make_trainable(ITERATIONS), sweep=str(sweep)), {"CPU": 0, "memory": 2**20})
    hooks = {"stop": steer.StopRequests(sweep, check_every_s=0.1),
             "callbacks": [steer.SweepStatus(sweep, {"scheduler": {"name": "fifo"}}, heartbeat_s=0.5)]}
    tuner = tune.Tuner(trainable, param_space={"x": tune.grid_search([1, 2])},
                       tune_config=tune.TuneConfig(max_concurrent_trials=2),
                       run_config=tune.RunConfig(name="s", storage_path=str(tmp_path), verbose=0, **hooks))
    done = []
    helper = threading.Thread(target=_steer, args=(sweep, done), daemon=True)
    helper.start()
    grid = tuner.fit()
    helper.join(5)
    assert done, "the run ended before it could be steered"
    first = done[0]
    doc = status(sweep)
    assert doc["state"] == "interrupted" and "stopped_by_user" in doc
    assert (sweep / "trials" / first / steer.STOPPED_BY_USER).exists()
    assert steer.pending_requests(sweep) == (False, set())
    assert all(r.metrics["samples"] < ITERATIONS for r in grid)  # nobody ran to the end

    grid = tune.Tuner.restore(str(sweep), trainable=trainable, resume_unfinished=True).fit()
    by_x = {r.config["x"]: r.metrics for r in grid}
    stopped_x = json.loads((sweep / "trials" / first / "params.json").read_text())["x"]
    assert by_x[stopped_x]["samples"] < ITERATIONS  # a stopped trial stays stopped
    assert by_x[3 - stopped_x]["samples"] == ITERATIONS  # the interrupted one ran to the end
    assert status(sweep)["state"] == "finished" and "stopped_by_user" not in status(sweep)
