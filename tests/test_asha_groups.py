"""PersistentASHA with scheduler.group_by: one ASHA per group, its rungs persisted per group, and
state files written before groups still load."""
import json
import pickle
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from scaling_study.errors import UserError
from scaling_study.storage import Loc
from scaling_study.tune.asha import ALL, PersistentASHA, group_label, state_groups

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
SETTINGS = dict(metric="f1", mode="max", time_attr="samples", max_t=900, grace_period=100, reduction_factor=3)
BY_BATCH = ["train.global_batch"]


def make(path, group_by=()):
    return PersistentASHA(state_path=str(path), group_by=group_by, **SETTINGS)


def trial(i, batch=16, name="lamb"):
    return SimpleNamespace(trial_id=f"t{i}", config={"train.global_batch": batch, "optimizer.name": name,
                                                     "optimizer.lr": 1e-3 * (i + 1)})


def report(sched, t, f1, samples=100):
    return sched.on_trial_result(None, t, {"samples": samples, "f1": f1})


def fill_small_batch_rung(sched):
    """Three batch-16 trials at the first rung: f1 50, 60, 70 (cut-off about 63)."""
    for i, f1 in enumerate([50.0, 60.0, 70.0]):
        sched.on_trial_add(None, trial(i))
        assert report(sched, trial(i), f1) == CONTINUE


def test_a_trial_competes_only_within_its_group(tmp_path):
    grouped = make(tmp_path / "grouped.json", BY_BATCH)
    fill_small_batch_rung(grouped)
    weak_small, large = trial(3, batch=16), trial(4, batch=512)
    grouped.on_trial_add(None, weak_small)
    grouped.on_trial_add(None, large)
    assert report(grouped, weak_small, 10.0) == STOP  # its group's rung says 10 is weak
    assert report(grouped, large, 10.0) == CONTINUE  # the same 10 at batch 512: first in its own group
    assert set(grouped.rungs()) == {"train.global_batch=16", "train.global_batch=512"}

    # Without groups the batch-512 trial is cut by the batch-16 trials' rung.
    single = make(tmp_path / "single.json")
    fill_small_batch_rung(single)
    single.on_trial_add(None, large)
    assert report(single, large, 10.0) == STOP


def test_group_label_names_each_key_and_value():
    config = trial(0, batch=64, name="lamb").config
    assert group_label(["train.global_batch", "optimizer.name"], config) == "train.global_batch=64, optimizer.name=lamb"
    with pytest.raises(ValueError, match="scheduler.group_by: a trial's config has no train.seed"):
        group_label(["train.seed"], config)


def test_grouped_rungs_survive_a_restart(tmp_path):
    state = tmp_path / "asha.json"
    first = make(state, BY_BATCH)
    fill_small_batch_rung(first)
    first.on_trial_add(None, trial(4, batch=512))
    report(first, trial(4, batch=512), 10.0)
    saved = json.loads(state.read_text())
    assert saved["group_by"] == BY_BATCH
    assert saved["groups"]["train.global_batch=512"]["brackets"][0][-1] == [100.0, {"t4": 10.0}]
    assert saved["groups"]["train.global_batch=16"]["trial_bracket"] == {"t0": 0, "t1": 0, "t2": 0}

    again = make(state, BY_BATCH)  # a new driver
    assert again.rungs() == first.rungs()
    again.on_trial_add(None, trial(5, batch=16))
    assert report(again, trial(5, batch=16), 55.0) == STOP  # below batch 16's cut-off
    again.on_trial_add(None, trial(6, batch=512))
    assert report(again, trial(6, batch=512), 55.0) == CONTINUE  # above batch 512's (10)


def test_unpickled_grouped_scheduler_reloads_its_groups(tmp_path):
    """`Tuner.restore` unpickles the scheduler as it was when the sweep started."""
    state = tmp_path / "asha.json"
    sched = make(state, BY_BATCH)
    pickled = pickle.dumps(sched)
    fill_small_batch_rung(sched)
    restored = pickle.loads(pickled)
    assert restored.rungs() == sched.rungs()
    restored.on_trial_add(None, trial(0))  # a restored trial keeps its group, bracket and recorded rung
    assert report(restored, trial(0), 1.0, samples=150) == CONTINUE


def test_search_properties_reach_every_group(tmp_path):
    state = tmp_path / "asha.json"
    settings = {k: v for k, v in SETTINGS.items() if k not in ("metric", "mode")}
    first = PersistentASHA(state_path=str(state), group_by=BY_BATCH, metric="loss", mode="min", **settings)
    for i, loss in enumerate([3.0, 2.0, 1.0]):
        first.on_trial_add(None, trial(i))
        assert first.on_trial_result(None, trial(i), {"samples": 100, "loss": loss}) == CONTINUE
    # Restored without metric and mode, as `build_scheduler` makes it: its groups come from the
    # file before Tune passes TuneConfig's metric and mode.
    sched = PersistentASHA(state_path=str(state), group_by=BY_BATCH, **settings)
    assert sched.set_search_properties("loss", "min")
    assert not sched.set_search_properties("f1", "max")  # already set: Tune then reports the conflict
    sched.on_trial_add(None, trial(3))
    assert sched.on_trial_result(None, trial(3), {"samples": 100, "loss": 5.0}) == STOP  # min: 5 is the worst
    sched.on_trial_add(None, trial(4, batch=512))  # a group created after: the same metric and mode
    assert sched.on_trial_result(None, trial(4, batch=512), {"samples": 100, "loss": 5.0}) == CONTINUE
    sched.on_trial_add(None, trial(5, batch=512))
    assert sched.on_trial_result(None, trial(5, batch=512), {"samples": 100, "loss": 6.0}) == STOP
    assert "per train.global_batch (2 groups): num_stopped=2" in sched.debug_string()


LEGACY = {"metric": "f1", "mode": "max", "time_attr": "samples", "num_stopped": 1,
          "brackets": [[[900.0, {}], [300.0, {}], [100.0, {"t0": 50.0, "t1": 60.0, "t2": 70.0}]]],
          "trial_bracket": {"t0": 0, "t1": 0, "t2": 0}}


def test_a_state_file_from_before_groups_loads_as_the_one_group(tmp_path):
    state = tmp_path / "asha.json"
    state.write_text(json.dumps(LEGACY))
    assert state_groups(LEGACY)[ALL]["brackets"] == LEGACY["brackets"]
    sched = make(state)
    assert sched.rungs()[ALL][0][-1] == (100.0, {"t0": 50.0, "t1": 60.0, "t2": 70.0})
    sched.on_trial_add(None, trial(3))
    assert report(sched, trial(3), 10.0) == STOP
    assert json.loads(state.read_text())["groups"][ALL]["num_stopped"] == 2  # rewritten in today's format


def test_rungs_grouped_otherwise_are_refused(tmp_path):
    state = tmp_path / "asha.json"
    state.write_text(json.dumps(LEGACY))
    with pytest.raises(UserError, match=r"asha.json: ASHA's rungs there are grouped by nothing, this sweep's "
                                         r"scheduler.group_by is \['train.global_batch'\]"):
        make(state, BY_BATCH)
    grouped = make(tmp_path / "grouped.json", BY_BATCH)
    grouped.on_trial_add(None, trial(0))
    report(grouped, trial(0), 50.0)
    with pytest.raises(UserError, match=r"by \['train.global_batch'\], this sweep's scheduler.group_by is empty"):
        make(tmp_path / "grouped.json")


def test_a_scheduler_pickled_before_groups_resumes(tmp_path):
    """A sweep started when PersistentASHA was an ASHAScheduler subclass, resumed on this version:
    its pickle holds ASHAScheduler's own state plus the state file's path."""
    old = ASHAScheduler(**SETTINGS)
    for i, f1 in enumerate([50.0, 60.0, 70.0]):
        old.on_trial_add(None, trial(i))
        old.on_trial_result(None, trial(i), {"samples": 100, "f1": f1})
    state = tmp_path / "asha.json"
    as_pickled = PersistentASHA.__new__(PersistentASHA)
    as_pickled.__dict__.update(old.__dict__, _state_path=Loc(str(state)), _saved_brackets={})
    restored = pickle.loads(pickle.dumps(as_pickled))
    assert restored.rungs()[ALL][0][-1] == (100.0, {"t0": 50.0, "t1": 60.0, "t2": 70.0})
    restored.on_trial_add(None, trial(3))
    assert report(restored, trial(3), 10.0) == STOP
    assert report(restored, trial(2), 80.0, samples=300) == CONTINUE  # t2 still tracked in its bracket


def test_the_study_page_shows_each_rung_with_its_group(tmp_path):
    from fixtures.service import write_live_sweep
    from scaling_study.service.index import Index
    from scaling_study.service.roots import parse_roots

    write_live_sweep(tmp_path / "results" / "live")
    state = tmp_path / "results" / "live" / "asha_state.json"
    state.unlink()  # the fixture's is ungrouped: a grouped sweep writes its own
    sched = make(state, BY_BATCH)
    fill_small_batch_rung(sched)
    sched.on_trial_add(None, trial(4, batch=512))
    report(sched, trial(4, batch=512), 10.0)
    rungs = Index(parse_roots([str(tmp_path / "results")])).get("0:live").detail()["rungs"]
    recorded = {(r["group"], r["milestone"]): r["results"] for r in rungs if r["results"]}
    assert recorded == {("train.global_batch=16", 100.0): {"t0": 50.0, "t1": 60.0, "t2": 70.0},
                        ("train.global_batch=512", 100.0): {"t4": 10.0}}
