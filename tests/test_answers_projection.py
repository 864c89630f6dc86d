"""The α-β all-reduce model and the step-time projection on hand-computed cases, and its checks."""
import math

import numpy as np
import pandas as pd
import pytest

from scaling_study.answers.checks import check_model, check_published, profile_from_records
from scaling_study.answers.links import LINKS, parse_cluster
from scaling_study.answers.projection import (
    DDP_BUCKET_BYTES, NCCL_BASE_LATENCY, Profile, allreduce_call_time, allreduce_time, project,
    ring_allreduce_time, step_time, with_time_to_target,
)
from scaling_study.answers.tradeoff import TradeoffFit
from scaling_study.errors import UserError
from scaling_study.results.records import assign_runs, normalize

GB, US, MB = 1e9, 1e-6, 1e6


def test_ring_by_hand():
    # 2·3/4 · 100 MB / 10 GB/s = 15 ms, plus 2·3 steps × 5 µs.
    assert ring_allreduce_time(100 * MB, 4, 10 * GB, 5 * US) == pytest.approx(0.015 + 30 * US)
    assert ring_allreduce_time(100 * MB, 1, 10 * GB, 5 * US) == 0.0


def test_one_node_is_a_ring_over_its_link():
    nbytes = 2**30
    expected = 8.4 * US + 14 * 3.4 * US + 1.75 * nbytes / (370 * GB)  # ring busbw, NVLS off
    assert allreduce_call_time(nbytes, 8, parse_cluster("nvlink4")) == pytest.approx(expected)


def test_across_nodes_ring_and_hierarchical_by_hand():
    cluster = parse_cluster("pcie4+2xnet100")  # node network: 2 × 12 GB/s = 24 GB/s < PCIe's 25
    s, n = 400 * MB, 32  # 4 nodes of 8
    # NCCL's ring latency: 2·nodes of the 2(N−1) steps cross the network (tuning.cc@b647562).
    ring = 8.4 * US + 2 * 31 / 32 * s / (24 * GB) + (62 - 8) * 5.7 * US + 8 * 14.0 * US
    hier = 8.4 * US + (2 * 7 / 8 * s / (25 * GB) + 14 * 5.7 * US) + (2 * 3 / 4 * s / (24 * GB) + 6 * 14.0 * US)
    assert allreduce_call_time(s, n, cluster, "ring") == pytest.approx(ring)
    assert allreduce_call_time(s, n, cluster, "hierarchical") == pytest.approx(hier)
    # At 1024 GPUs the ring's 2(N−1) latency steps make hierarchical faster on a small message.
    small = 4 * MB
    assert allreduce_call_time(small, 1024, cluster, "hierarchical") < allreduce_call_time(small, 1024, cluster, "ring")


def test_ddp_buckets_each_pay_the_latency():
    cluster = parse_cluster("nvlink3")
    grad = 2.5 * DDP_BUCKET_BYTES
    one = allreduce_call_time(DDP_BUCKET_BYTES, 8, cluster)
    half = allreduce_call_time(0.5 * DDP_BUCKET_BYTES, 8, cluster)
    assert allreduce_time(grad, 8, cluster) == pytest.approx(2 * one + half)
    assert allreduce_time(grad, 8, cluster, bucket_bytes=None) == pytest.approx(allreduce_call_time(grad, 8, cluster))
    assert allreduce_time(grad, 8, cluster) - allreduce_time(grad, 8, cluster, bucket_bytes=None) == pytest.approx(
        2 * (NCCL_BASE_LATENCY + 14 * LINKS["nvlink3"].latency))


def test_step_time_and_weak_scaling_efficiency_by_hand():
    profile = Profile(compute_s_per_sample=1e-3, grad_bytes=100 * MB, per_worker_batch=32, optimizer_s=0.01,
                      overlap=0.5)
    cluster = parse_cluster("nvlink4+8xnet400")
    comm = allreduce_time(100 * MB, 64, cluster, "hierarchical")
    t = step_time(profile, 64, 2, cluster, "hierarchical")
    assert t["compute_s"] == pytest.approx(0.064) and t["allreduce_s"] == pytest.approx(comm)
    assert t["exposed_allreduce_s"] == pytest.approx(max(0.5 * comm, comm - 0.032))
    assert t["step_time_s"] == pytest.approx(0.064 + t["exposed_allreduce_s"] + 0.01)
    table = project(profile, cluster, "hierarchical", workers=(8, 64), accums=(1, 2)).set_index(
        ["grad_accum", "num_workers"])
    assert table.loc[(2, 64), "efficiency"] == pytest.approx(0.074 / t["step_time_s"])
    assert table.loc[(2, 64), "global_batch"] == 64 * 32 * 2
    # Accumulation amortises the all-reduce: higher efficiency at k = 2 than at k = 1.
    assert table.loc[(2, 64), "efficiency"] > table.loc[(1, 64), "efficiency"]


def test_hidden_all_reduce_is_bounded_by_one_micro_batch():
    profile = Profile(compute_s_per_sample=1e-4, grad_bytes=1e9, per_worker_batch=10, overlap=1.0)
    t = step_time(profile, 16, 4, parse_cluster("pcie4+net100"))
    assert t["exposed_allreduce_s"] == pytest.approx(t["allreduce_s"] - 1e-3)


def test_time_to_target_only_inside_the_measured_batch_range():
    fit = TradeoffFit(s_min=100, e_min=12800, rms_rel_error=0, r2_log=1, batches=(256.0, 4096.0))
    table = pd.DataFrame({"global_batch": [128, 1024, 8192], "step_time_s": [0.5, 0.5, 0.5]})
    out = with_time_to_target(table, fit)
    assert out["in_range"].tolist() == [False, True, False]
    assert out.loc[1, "time_to_target_s"] == pytest.approx((100 + 12800 / 1024) * 0.5)
    assert out[["steps_to_target"]].iloc[[0, 2]].isna().all().all()
    beyond = with_time_to_target(table, fit, extrapolate=True)
    assert beyond["steps_to_target"].notna().all()
    # Extrapolated S(B) stays above S_min, the samples above E_min.
    assert (beyond["steps_to_target"] > fit.s_min).all() and (beyond["samples_to_target"] > fit.e_min).all()


def test_time_to_target_carries_the_bootstrap_interval():
    draws = np.array([[90.0, 12000.0], [100.0, 12800.0], [110.0, 13600.0]] * 10)
    fit = TradeoffFit(100, 12800, 0, 1, (256.0, 4096.0), draws=draws)
    out = with_time_to_target(pd.DataFrame({"global_batch": [1024], "step_time_s": [2.0]}), fit).iloc[0]
    assert out["steps_lo"] == pytest.approx(90 + 12000 / 1024) and out["steps_hi"] == pytest.approx(110 + 13600 / 1024)
    assert out["time_lo_s"] == pytest.approx(2 * out["steps_lo"]) and out["time_hi_s"] == pytest.approx(2 * out["steps_hi"])


def test_per_worker_batches_halve_down_to_one():
    profile = Profile(compute_s_per_sample=1e-3, grad_bytes=1e6, per_worker_batch=12)
    assert profile.per_worker_batches() == (12, 6, 3, 1)
    table = project(profile, parse_cluster("nvlink4+8xnet400"), workers=(64,), accums=(1,),
                    per_worker_batches=profile.per_worker_batches())
    assert table["global_batch"].tolist() == [64 * 12, 64 * 6, 64 * 3, 64]


def test_cluster_names_are_checked():
    assert parse_cluster("nvlink4+8xnet400").node_bandwidth == pytest.approx(8 * 48 * GB)
    assert str(parse_cluster("pcie4+net100")) == "pcie4+1xnet100 (8/node)"
    for bad in ("nvlink9", "net100", "pcie4+net7"):
        with pytest.raises(UserError, match="nvlink4"):
            parse_cluster(bad)
    with pytest.raises(UserError, match="network"):
        allreduce_call_time(MB, 16, parse_cluster("nvlink4"))


def test_published_all_reduce_points_are_ring_measurements_with_a_commit():
    table = check_published()
    assert len(table) >= 1 and (table["algorithm"] == "ring").all()
    assert table["source"].str.contains("@").all()  # repository/file@commit
    # The large-message ring point checks β (α is < 0.1 % of it there): within 5 %.
    assert (table["rel_error"].abs() < 0.05).all()


def timing_records(compute_at_2=0.9):
    """N = 1: 0.9 s compute + 0.1 s optimizer per step of 32 samples. N = 2: 0.25 s exposed
    all-reduce, and `compute_at_2` s compute; the train time follows from the parts."""
    rows = []
    for n, compute, comm in ((1, 0.9, 0.0), (2, compute_at_2, 0.25)):
        step = compute + 0.1 + comm
        for i in (1, 2, 3):
            rows.append({"run_id": f"n{n}", "task": "squad", "model": "tiny", "optimizer": "lamb",
                         "device": "cpu", "lr_rule": "none", "per_worker_batch": 16, "grad_accum": 2,
                         "num_workers": n, "global_batch": 32 * n, "step": 10 * i, "samples": 320 * n * i,
                         "train_time_s": 10 * i * step, "time_compute_s": compute,
                         "time_allreduce_s": comm, "time_optimizer_s": 0.1})
    return assign_runs(normalize(pd.DataFrame(rows), "timing.csv"))


def test_model_check_reproduces_a_decomposed_step():
    row = check_model(timing_records()).iloc[0]
    assert row["measured_efficiency"] == pytest.approx(1.0 / 1.25)
    assert row["predicted_efficiency"] == pytest.approx(0.8) and row["error"] == pytest.approx(0, abs=1e-12)


def test_model_check_separates_slower_compute_from_communication():
    row = check_model(timing_records(compute_at_2=1.0)).iloc[0]
    assert row["measured_efficiency"] == pytest.approx(1.0 / 1.35)
    assert row["predicted_own_compute"] == pytest.approx(row["measured_efficiency"])
    assert row["error"] == pytest.approx(0.8 - 1.0 / 1.35)  # the model alone over-predicts


def test_profile_from_the_smallest_worker_count():
    profile = profile_from_records(timing_records(), grad_bytes=4e8)
    assert profile.compute_s_per_sample == pytest.approx(0.9 / 32)
    assert profile.optimizer_s == pytest.approx(0.1) and profile.per_worker_batch == 16
    assert math.isclose(profile.grad_bytes, 4e8)
    with pytest.raises(UserError, match="adamw"):
        profile_from_records(timing_records(), 4e8, optimizer="adamw")
