"""The recommendation per worker count, on crafted records whose answer is known."""
import math

import numpy as np
import pandas as pd
import pytest

from scaling_study.answers.links import parse_cluster
from scaling_study.answers.recommend import Plan, job_overrides, lr_at, lr_rule_of_sweep, recommend
from scaling_study.errors import UserError
from scaling_study.results.records import assign_runs, normalize
from scaling_study.results.targets import make_target

TARGET = make_target("f1", 88)
PLAN = Plan(cluster=parse_cluster("nvlink4+8xnet400"), grad_bytes=1e3, algorithm="hierarchical", accums=(1, 2, 4))


def steps_at(batch, s_min=100.0, b_crit=128.0):
    return int(s_min * (1 + b_crit / batch))


def run(run_id, optimizer, batch, lr, reach, workers=2, every=25):
    """F1 reaches 88 exactly at step `reach`; 1 ms of compute per sample, nothing else."""
    pwb = batch // workers
    rows = []
    for step in range(every, reach + 1, every):
        rows.append({"run_id": run_id, "task": "squad", "model": "tiny", "optimizer": optimizer,
                     "global_batch": batch, "per_worker_batch": pwb, "grad_accum": 1, "num_workers": workers,
                     "peak_lr": lr, "lr_rule": "none", "hp.optimizer.lr": lr, "step": step,
                     "samples": step * batch, "train_time_s": step * 1e-3 * pwb, "f1": 88.0 * step / reach,
                     "time_compute_s": 1e-3 * pwb, "time_allreduce_s": 0.0, "time_optimizer_s": 0.0})
    return rows


def records():
    """LAMB swept at 32 … 512 on 2 workers (best LR ∝ √B; a 10× LR is slower), AdamW likewise
    but needing twice the steps. Nothing ran on more than 2 workers."""
    rows = []
    for batch in (32, 64, 128, 256, 512):
        lr = 1e-3 * math.sqrt(batch / 32)
        rows += run(f"lamb-{batch}", "lamb", batch, lr, steps_at(batch))
        rows += run(f"lamb-{batch}-hot", "lamb", batch, 10 * lr, 2 * steps_at(batch))
        rows += run(f"adamw-{batch}", "adamw", batch, lr / 10, 2 * steps_at(batch))
    return assign_runs(normalize(pd.DataFrame(rows), "crafted.csv"))


def test_measured_where_a_run_at_n_reached_the_target():
    row = recommend(records(), TARGET, [2]).iloc[0]
    # The fastest in train time: batch 32 (500 steps × 16 ms) beats 64 (300 × 32 ms) and the rest.
    assert row["basis"] == "measured" and row["optimizer"] == "lamb"
    assert (row["global_batch"], row["per_worker_batch"], row["grad_accum"]) == (32, 16, 1)
    assert row["peak_lr"] == pytest.approx(1e-3) and row["steps_to_target"] == 500
    assert row["time_to_target_s"] == pytest.approx(500 * 0.016) and row["detail"] == "run lamb-32"


def test_projected_elsewhere_with_the_least_time_to_target():
    table = recommend(records(), TARGET, [8, 16], PLAN).set_index("num_workers")
    # 8 workers × 16: B = 128 (k=1, 200 steps × 16 ms) beats 256 (k=2, 150 × 32 ms) and 512 (k=4).
    eight = table.loc[8]
    assert eight["basis"] == "projected" and eight["optimizer"] == "lamb"
    assert (eight["global_batch"], eight["grad_accum"]) == (128, 1)
    assert eight["steps_to_target"] == pytest.approx(200, rel=0.01)
    assert eight["time_to_target_s"] == pytest.approx(200 * 0.016, rel=0.01)
    assert eight["peak_lr"] == pytest.approx(2e-3) and eight["lr_rule"] == "measured"
    assert (table.loc[16, "global_batch"], table.loc[16, "grad_accum"]) == (256, 1)


def test_none_outside_the_measured_batches_or_without_a_cluster():
    table = recommend(records(), TARGET, [1024], PLAN)
    assert table.loc[0, "basis"] == "none" and "batch range" in table.loc[0, "detail"]
    table = recommend(records(), TARGET, [8])
    assert table.loc[0, "basis"] == "none" and "no plan" in table.loc[0, "detail"]
    with pytest.raises(UserError, match="no recommendation"):
        job_overrides(table.iloc[0])


def test_lr_rule_follows_the_sweep():
    batches = np.array([32, 64, 128, 256])
    assert lr_rule_of_sweep(batches, 1e-3 * np.sqrt(batches)) == "sqrt"
    assert lr_rule_of_sweep(batches, 1e-5 * batches) == "linear"
    assert lr_rule_of_sweep(batches, np.full(4, 1e-3)) == "none"
    assert lr_rule_of_sweep([64], [1e-3]) == "none"
    settings = pd.DataFrame({"global_batch": batches, "peak_lr": 1e-3 * np.sqrt(batches / 32)})
    lr, rule = lr_at(settings, 1024)  # nearest measured: 256, moved by √(1024/256)
    assert rule == "sqrt" and lr == pytest.approx(1e-3 * math.sqrt(256 / 32) * 2)
    assert lr_at(settings, 64) == (pytest.approx(1e-3 * math.sqrt(2)), "measured")


def test_job_overrides_pin_the_peak_lr():
    row = recommend(records(), TARGET, [8], PLAN).iloc[0]
    assert job_overrides(row) == {
        "scaling.num_workers": 8, "optimizer.name": "lamb", "optimizer.lr": pytest.approx(2e-3),
        "schedule.lr_rule": "none", "schedule.reference_batch": None, "train.per_worker_batch": 16,
        "train.grad_accum": 1, "train.global_batch": 128}
