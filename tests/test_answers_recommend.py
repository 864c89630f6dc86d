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


def run(run_id, optimizer, batch, lr, reach, workers=2, every=5, device="cuda"):
    """F1 reaches 88 exactly at step `reach`; 1 ms of compute per sample (on a GPU), nothing else."""
    pwb = batch // workers
    rows = []
    for step in range(every, reach + 1, every):
        rows.append({"run_id": run_id, "task": "squad", "model": "tiny", "optimizer": optimizer, "device": device,
                     "seq_len": 64,
                     "global_batch": batch, "per_worker_batch": pwb, "grad_accum": 1, "num_workers": workers,
                     "peak_lr": lr, "lr_rule": "none", "hp.optimizer.lr": lr, "step": step,
                     "samples": step * batch, "train_time_s": step * 1e-3 * pwb, "f1": 88.0 * step / reach,
                     "time_compute_s": 1e-3 * pwb, "time_allreduce_s": 0.0, "time_optimizer_s": 0.0})
    return rows


def records(device="cuda"):
    """LAMB swept at 32 … 512 on 2 workers (best LR ∝ √B; a 10× LR is slower), AdamW likewise
    but needing twice the steps. Nothing ran on more than 2 workers."""
    rows = []
    for batch in (32, 64, 128, 256, 512):
        lr = 1e-3 * math.sqrt(batch / 32)
        rows += run(f"lamb-{batch}", "lamb", batch, lr, steps_at(batch), device=device)
        rows += run(f"lamb-{batch}-hot", "lamb", batch, 10 * lr, 2 * steps_at(batch), device=device)
        rows += run(f"adamw-{batch}", "adamw", batch, lr / 10, 2 * steps_at(batch), device=device)
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
    # Nothing to all-reduce worth counting: time = S(B) × B/N × 1 ms = (100·B + 12800)/N ms, least at
    # the smallest batch measured, 32: 8 workers × per-worker batch 4 (500 steps × 4 ms).
    eight = table.loc[8]
    assert eight["basis"] == "projected" and eight["optimizer"] == "lamb"
    assert (eight["global_batch"], eight["per_worker_batch"], eight["grad_accum"]) == (32, 4, 1)
    assert eight["steps_to_target"] == pytest.approx(500, rel=0.02)  # crossings 2.5 steps before each hit
    assert eight["time_to_target_s"] == pytest.approx(500 * 0.004, rel=0.02)
    assert eight["steps_lo"] <= eight["steps_to_target"] <= eight["steps_hi"]
    assert eight["time_lo_s"] <= eight["time_to_target_s"] <= eight["time_hi_s"]
    assert eight["peak_lr"] == pytest.approx(1e-3) and eight["lr_rule"] == "measured"
    assert (table.loc[16, "global_batch"], table.loc[16, "per_worker_batch"]) == (32, 2)


def test_per_worker_batches_down_to_one_inside_the_measured_range():
    row = recommend(records(), TARGET, [512], PLAN).iloc[0]
    # 512 workers × per-worker batch 1 = 512, the largest batch measured
    assert row["basis"] == "projected" and (row["global_batch"], row["per_worker_batch"]) == (512, 1)


def test_extrapolated_beyond_the_measured_batches_with_its_bounds():
    row = recommend(records(), TARGET, [1024], PLAN).iloc[0]
    assert row["basis"] == "extrapolated" and row["global_batch"] == 1024  # N's smallest batch
    assert "extrapolated beyond the measured batches" in row["detail"] and "S_min" in row["detail"]
    assert 100 * 0.97 < row["steps_lo"] <= row["steps_to_target"] <= row["steps_hi"]
    assert row["steps_to_target"] == pytest.approx(steps_at(1024), rel=0.05)


def test_cpu_records_are_not_projected_onto_gpu_links_without_a_device_profile():
    row = recommend(records(device="cpu"), TARGET, [8], PLAN).iloc[0]
    assert row["basis"] == "none" and "--device-profile" in row["detail"] and "cpu" in row["detail"]


def test_a_named_device_profile_gives_the_compute_from_flops():
    from scaling_study.answers.device import NAMED, training_flops_per_sample

    config = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 2, "vocab_size": 30522}
    plan = Plan(parse_cluster("nvlink4+8xnet400"), 1e3, accums=(1,), device=NAMED["h100-sxm-bf16"],
                model_config=config)
    row = recommend(records(device="cpu"), TARGET, [8], plan).iloc[0]
    assert row["basis"] == "projected" and "h100-sxm-bf16" in row["device"]
    per_sample = training_flops_per_sample(config, 64, "squad") / 794.5e12
    # 3·64·(2·2·(4·128² + 2·128·512) + 2·2·64·128) FLOPs per sample, by hand
    assert training_flops_per_sample(config, 64, "squad") == pytest.approx(
        3 * 64 * (2 * (2 * (4 * 128**2 + 2 * 128 * 512) + 2 * 128) + 2 * 2 * 64 * 128))
    assert row["time_to_target_s"] > row["steps_to_target"] * row["global_batch"] / 8 * per_sample


def test_none_without_a_plan():
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
        "scaling.num_workers": 8, "optimizer.name": "lamb", "optimizer.lr": pytest.approx(1e-3),
        "schedule.lr_rule": "none", "schedule.reference_batch": None, "train.per_worker_batch": 4,
        "train.grad_accum": 1, "train.global_batch": 32}
