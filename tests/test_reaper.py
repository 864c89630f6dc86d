"""Which placement groups the sweep removes: worker groups CREATED with no live actor for the grace."""
from scaling_study.tune.reaper import orphans


def group(gid, state="CREATED", **resources):
    return {"id": gid, "state": state, "resources": resources or {"CPU": 1.0}}


def test_an_idle_worker_group_is_removed_only_after_the_grace():
    first_idle = {}
    groups = [group("idle"), group("busy"), group("pending", state="PENDING"), group("tune", memory=6.4e7)]
    assert orphans(groups, {"busy"}, first_idle, now=100.0, grace_s=60) == []
    assert first_idle == {"idle": 100.0}  # a pending group, one in use and Tune's memory-only group are never idle
    assert orphans(groups, {"busy"}, first_idle, now=159.0, grace_s=60) == []
    assert orphans(groups, {"busy"}, first_idle, now=160.0, grace_s=60) == ["idle"]


def test_a_group_that_gets_its_workers_is_forgotten():
    first_idle = {}
    assert orphans([group("g")], set(), first_idle, now=0.0, grace_s=60) == []
    assert orphans([group("g")], {"g"}, first_idle, now=30.0, grace_s=60) == []  # its workers came
    assert first_idle == {}
    assert orphans([group("g")], set(), first_idle, now=80.0, grace_s=60) == []  # idle again: a new grace
    assert orphans([group("g")], set(), first_idle, now=140.0, grace_s=60) == ["g"]


def test_gpu_groups_count_and_gone_groups_are_forgotten():
    first_idle = {"gone": 0.0}
    assert orphans([group("gpu", GPU=1.0)], set(), first_idle, now=10.0, grace_s=0) == ["gpu"]
    assert "gone" not in first_idle
