"""PersistentASHA: rung decisions survive a new scheduler object (a restarted sweep driver)."""
import pickle
from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from scaling_study.tune.asha import PersistentASHA


def make(path):
    return PersistentASHA(state_path=str(path), metric="f1", mode="max", time_attr="samples",
                          max_t=900, grace_period=100, reduction_factor=3)


def trial(i):
    return SimpleNamespace(trial_id=f"t{i}")


def test_rungs_survive_a_restart(tmp_path):
    state = tmp_path / "asha.json"
    first = make(state)
    for i, f1 in enumerate([50.0, 60.0, 70.0]):
        first.on_trial_add(None, trial(i))
        assert first.on_trial_result(None, trial(i), {"samples": 100, "f1": f1}) == TrialScheduler.CONTINUE
    assert state.is_file()

    # A new driver: without the state file, a weak trial would pass the first rung.
    again = make(state)
    assert again.rungs() == first.rungs()
    again.on_trial_add(None, trial(3))
    assert again.on_trial_result(None, trial(3), {"samples": 100, "f1": 10.0}) == TrialScheduler.STOP

    fresh = make(tmp_path / "other.json")
    fresh.on_trial_add(None, trial(3))
    assert fresh.on_trial_result(None, trial(3), {"samples": 100, "f1": 10.0}) == TrialScheduler.CONTINUE


def test_unpickled_scheduler_reloads_rungs_recorded_after_pickling(tmp_path):
    """`Tuner.restore` unpickles the scheduler as it was at the start of the sweep."""
    state = tmp_path / "asha.json"
    sched = make(state)
    pickled = pickle.dumps(sched)
    sched.on_trial_add(None, trial(0))
    sched.on_trial_result(None, trial(0), {"samples": 100, "f1": 80.0})
    restored = pickle.loads(pickled)
    assert restored.rungs() == sched.rungs()
    restored.on_trial_add(None, trial(0))  # restored trial keeps its bracket and its recorded rung
    assert restored.on_trial_result(None, trial(0), {"samples": 150, "f1": 1.0}) == TrialScheduler.CONTINUE
