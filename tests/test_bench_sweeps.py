"""`bench sweeps`: what counts as a leak, and the summary line (the sweeps themselves are Ray's)."""
from types import SimpleNamespace

from scaling_study.bench import sweeps


def test_only_placement_groups_not_removed_count_as_held():
    table = {"a" * 20: {"state": "REMOVED", "bundles": {0: {"CPU": 1.0}}},
             "b" * 20: {"state": "CREATED", "bundles": {0: {"CPU": 1.0}}},
             "c" * 20: {"state": "PENDING", "bundles": {0: {"CPU": 1.0}, 1: {"CPU": 1.0}}}}
    assert sweeps.held(table) == [{"id": "b" * 12, "state": "CREATED", "bundles": [{"CPU": 1.0}]},
                                  {"id": "c" * 12, "state": "PENDING", "bundles": [{"CPU": 1.0}, {"CPU": 1.0}]}]


def test_settle_reports_cpus_that_never_came_back():
    ray = SimpleNamespace(util=SimpleNamespace(placement_group_table=dict),
                          available_resources=lambda: {"CPU": 1.0})
    left = sweeps.settle(ray, total_cpu=2.0, seconds=0)
    assert left == [{"id": "-", "state": "CPU not free", "bundles": [{"CPU": 1.0}]}]
    ray.available_resources = lambda: {"CPU": 2.0}
    assert sweeps.settle(ray, total_cpu=2.0, seconds=0) == []


def test_the_summary_counts_hangs_leaks_and_time_per_sweep():
    args = SimpleNamespace(space="s.yaml", sweeps=3)
    results = [{"seconds": 10.0, "hung": None, "leaked": []},
               {"seconds": 30.0, "hung": None, "leaked": [{"id": "x"}]},
               {"seconds": 99.0, "hung": {"held": []}, "leaked": []}]
    text = sweeps.summary(args, results)
    assert "sweeps run: 3 of 3; hangs: 1; leaked placement groups: 1" in text
    assert "(min / median / max): 10.0 / 20.0 / 30.0 s" in text
