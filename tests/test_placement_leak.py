"""A Train run whose controller dies while its worker group waits for room leaks nothing.

Ray 2.60's Train controller told its placement-group cleaner about a worker group's placement group
only once the workers had started; a controller killed before then (Tune stopping a trial while its
workers start) left the group reserved until the sweep's driver exited, and the next trial needing
those CPUs waited for ever (scaling_study.compat.register_worker_group_placement_groups)."""
import os
import time

import pytest

from conftest import tiny_job_data
from scaling_study.config import job_from_dict
from scaling_study.train.driver import RunFailed, run_job
from scaling_study.train.placement import START_TIMEOUT_ENV

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module", autouse=True)
def short_placement_attempts():
    """Ray Train's placement attempts of 2 s (not 60) in this module's Ray, set before it starts."""
    before = os.environ.get(START_TIMEOUT_ENV)
    os.environ[START_TIMEOUT_ENV] = "2"
    yield
    if before is None:
        os.environ.pop(START_TIMEOUT_ENV)
    else:
        os.environ[START_TIMEOUT_ENV] = before


def worker_group_placement_groups(ray):
    """States of the placement groups that reserve CPUs (Tune's trial groups reserve none here)."""
    return [info["state"] for info in ray.util.placement_group_table().values()
            if info["state"] != "REMOVED" and any(b.get("CPU", 0) for b in info["bundles"].values())]


def wait_until(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s for {what}")
        time.sleep(0.05)


def blocker_of_one_cpu(ray):
    @ray.remote(num_cpus=1)
    class Blocker:  # holds one of the 2 CPUs, so that a 2-worker group stays pending
        def ping(self):
            return True

    blocker = Blocker.remote()
    assert ray.get(blocker.ping.remote(), timeout=60)
    return blocker


@pytest.mark.parametrize("workers, batch, how", [(2, 8, "attempts of 2 s"),
                                                 ([2, 3], 24, "the fewest of the elastic scaling.num_workers [2, 3]")])
def test_a_run_without_room_fails_within_its_placement_timeout_naming_what_holds_the_cluster(
        local_ray, tmp_path, synth_dir, workers, batch, how):
    """A fixed run's attempts to place its workers end after scaling.placement_timeout_s, and so
    do an elastic run's (for its fewest workers, on a cluster that could hold them)."""
    job = job_from_dict(tiny_job_data(synth_dir, scaling={"num_workers": workers, "placement_timeout_s": 3},
                                      train={"global_batch": batch}, output={"dir": str(tmp_path / "runs")}))
    blocker = blocker_of_one_cpu(local_ray)
    try:
        with pytest.raises(RunFailed) as failed:
            run_job(job, verbose=False)
    finally:
        local_ray.kill(blocker)
    message = str(failed.value)
    assert "scaling.placement_timeout_s" in message and "2 worker(s) x {CPU: 1}" in message
    assert f"within 3 s ({how})" in message
    assert "the cluster has CPU 2" in message and "placement group" in message


def test_a_controller_killed_while_its_workers_wait_for_room_leaks_no_placement_group(local_ray, tmp_path):
    ray = local_ray
    @ray.remote(num_cpus=0)
    class TrialDriver:  # as a Tune trial's actor: owns the run's Train controller
        def fit(self, storage):
            import ray.train
            from ray.train.torch import TorchTrainer

            from scaling_study.train.records import RecordsCallback

            trainer = TorchTrainer(lambda config: None, scaling_config=ray.train.ScalingConfig(num_workers=2),
                                   run_config=ray.train.RunConfig(name="leak", storage_path=storage,
                                                                  callbacks=[RecordsCallback(f"{storage}/leak")]))
            return trainer.fit()

    blocker = blocker_of_one_cpu(ray)
    driver = TrialDriver.remote()
    driver.fit.remote(str(tmp_path))
    wait_until(lambda: worker_group_placement_groups(ray) == ["PENDING"], 60, "the worker group's placement group")
    ray.kill(driver)  # the controller dies with its owner, before any worker started
    ray.kill(blocker)  # room for the orphaned group: without the fix it is placed, and held
    wait_until(lambda: not worker_group_placement_groups(ray), 30, "Ray Train's cleaner to remove the group")
    wait_until(lambda: ray.available_resources().get("CPU", 0) == 2, 30, "both CPUs to be free again")


def test_the_sweeps_reaper_removes_a_worker_group_nothing_runs_in_and_keeps_one_in_use(local_ray):
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from scaling_study.tune.reaper import PlacementGroupReaper

    ray = local_ray
    orphan, used = ray.util.placement_group([{"CPU": 1}]), ray.util.placement_group([{"CPU": 1}])
    ray.get([orphan.ready(), used.ready()], timeout=60)

    @ray.remote(num_cpus=1)
    class Worker:
        def ping(self):
            return True

    worker = Worker.options(scheduling_strategy=PlacementGroupSchedulingStrategy(used)).remote()
    assert ray.get(worker.ping.remote(), timeout=60)
    reaper = PlacementGroupReaper(grace_s=0)
    reaper.look(now=0.0)
    assert reaper.removed == [orphan.id.hex()]
    wait_until(lambda: ray.util.placement_group_table(orphan)["state"] == "REMOVED", 30, "the orphan's removal")
    assert ray.util.placement_group_table(used)["state"] == "CREATED"
    ray.kill(worker)
    ray.util.remove_placement_group(used)
