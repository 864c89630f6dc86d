"""The projection's inputs from records, and the projection checked against what can check it.

Two checks, each testing a different part of the model (docs/answers.md, "How good is the model"):

- `check_model`: the measured 1 → 2 worker weak-scaling efficiency of the records against the
  step-time decomposition (compute + exposed all-reduce + optimizer). The all-reduce time there is
  the one measured at N = 2 (`time_allreduce_s`), so this checks the decomposition, not the α-β
  constants (which describe NCCL links, not gloo on one machine). `predicted_efficiency` uses the
  N = 1 compute time; `predicted_own_compute` the N = 2 run's own compute and optimizer
  times, so that the gap between the two is computation slowed by sharing the machine, which no communication
  model predicts.
- `check_published`: the α-β all-reduce model against published ring all-reduce measurements
  whose inputs (link, ranks, nodes, bytes) are known and whose source names a repository, a file
  and a commit.

The LAMB paper's 76.7 % (49× faster on 64× the TPU v3 chips) cannot check the model: it is a
time-to-train ratio across different batch sizes, step counts and two phases, and the per-step
compute and all-reduce times on the TPU torus are not published.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from scaling_study.answers.links import GB, LINKS, Cluster
from scaling_study.answers.projection import GRAD_ELEMENT_BYTES, Profile, allreduce_call_time, bus_bandwidth
from scaling_study.errors import UserError
from scaling_study.results.records import Needs, ordered
from scaling_study.results.scaling import WEAK_KEYS, present, weak_scaling

MIB, GIB = 2**20, 2**30
PROFILE = Needs("projection inputs", ("time_compute_s", "per_worker_batch", "grad_accum", "num_workers"))
DEVICE_PROFILE = Needs("projection with a device profile", ("task", "model", "seq_len", "per_worker_batch"))
MODEL_CHECK = Needs("1 → 2 worker model check",
                    ("time_compute_s", "time_allreduce_s", "num_workers", "per_worker_batch"))


def steady_rows(records: pd.DataFrame) -> pd.DataFrame:
    """Evaluation rows after each run's first (whose window holds start-up), or the only one."""
    rows = ordered(records)
    position = rows.groupby("run").cumcount()
    size = rows.groupby("run")["run"].transform("size")
    return rows[(position > 0) | (size == 1)]


def profile_from_records(records: pd.DataFrame, grad_bytes: float, optimizer: str | None = None,
                         overlap: float = 0.0) -> Profile:
    """A Profile from the runs at the smallest worker count (medians over steady windows).

    Compute per sample = time_compute_s / (per_worker_batch × grad_accum); the per-worker batch is
    the most common one. UserError when the records lack the timing columns or `optimizer`.
    """
    PROFILE.check(records)
    rows = records if optimizer is None else records[records["optimizer"] == optimizer]
    rows = steady_rows(rows.dropna(subset=["time_compute_s", "per_worker_batch", "grad_accum"]))
    if rows.empty:
        raise UserError(f"no run{' of ' + optimizer if optimizer else ''} records time_compute_s")
    rows = rows[rows["num_workers"] == rows["num_workers"].min()]
    per_sample = rows["time_compute_s"] / (rows["per_worker_batch"] * rows["grad_accum"])
    opt = rows["time_optimizer_s"].median() if "time_optimizer_s" in rows.columns else 0.0
    return Profile(compute_s_per_sample=float(per_sample.median()), grad_bytes=float(grad_bytes),
                   per_worker_batch=int(rows["per_worker_batch"].mode().iloc[0]),
                   optimizer_s=0.0 if np.isnan(opt) else float(opt), overlap=overlap)


def profile_for(records: pd.DataFrame, plan, optimizer: str | None = None) -> Profile:
    """The projection's inputs for `optimizer` on `plan`'s device.

    With a device profile (`plan.device`): its compute per sample and optimizer step for the
    records' model and sequence length, the records' per-worker batch (a measured profile: its
    own). Without one: the records' own timings (`profile_from_records`), only where every run was
    measured on a GPU; CPU records would put CPU compute next to GPU links, so UserError says
    what to give instead.
    """
    rows = records if optimizer is None else records[records["optimizer"] == optimizer]
    if plan.device is None:
        require_gpu_records(rows)
        profile = profile_from_records(records, plan.grad_bytes, optimizer, plan.overlap)
        return replace(profile, device="records (GPU)")
    DEVICE_PROFILE.check(rows)
    task, model, seq_len = _one_value(rows, "task"), _one_value(rows, "model"), int(_one_value(rows, "seq_len"))
    if hasattr(plan.device, "entry"):  # measured on the device
        if plan.device.accelerator != "cuda":
            raise UserError(f"--device-profile {plan.device.path}: measured on {plan.device.device} "
                            f"(accelerator: {plan.device.accelerator}), not on the GPUs whose links the projection "
                            "models: profile a GPU (scaling-study bench profile --device cuda)")
        entry = plan.device.entry(model, task, seq_len)
        return Profile(1.0 / entry.samples_per_s, plan.grad_bytes, entry.batch, entry.optimizer_step_s,
                       plan.overlap, plan.device.label())
    if plan.model_config is None:
        raise UserError(f"--device-profile {plan.device.name}: model {model!r}'s configuration cannot be read "
                        "here, so its FLOPs per sample are unknown: measure it (scaling-study bench profile)")
    pwb = int(rows["per_worker_batch"].dropna().mode().iloc[0])
    return Profile(plan.device.compute_s_per_sample(plan.model_config, seq_len, task), plan.grad_bytes, pwb,
                   plan.device.optimizer_s(int(plan.grad_bytes // GRAD_ELEMENT_BYTES)), plan.overlap, plan.device.label())


def require_gpu_records(records: pd.DataFrame) -> None:
    """UserError unless every row's `device` is a GPU (cuda…): the records' compute may then go
    next to GPU links. The message says what to give instead."""
    devices = sorted(set(records["device"].dropna().astype(str))) if "device" in records.columns else []
    if devices and all(d.startswith("cuda") for d in devices):
        return
    from scaling_study.answers.device import NAMED

    found = ", ".join(devices) if devices else "no device column"
    raise UserError(f"the records' compute was measured on {found}, not on the GPUs whose links the projection "
                    "models: give --device-profile FILE (measured on the GPU by `scaling-study bench profile "
                    f"--out FILE`) or NAME (derived from FLOPs per sample: {', '.join(NAMED)})")


def _one_value(rows: pd.DataFrame, col: str):
    values = rows[col].dropna().unique() if col in rows.columns else []
    if len(values) != 1:
        raise UserError(f"a device profile projects one model at one sequence length: the records hold "
                        f"{len(values)} values of {col!r} ({', '.join(map(str, values[:5]))})")
    return values[0]


def check_model(records: pd.DataFrame) -> pd.DataFrame:
    """Predicted against measured weak-scaling efficiency from one worker to two, per group.

    Columns: the weak-scaling keys present, measured_efficiency (throughput, `weak_scaling`),
    compute_s, optimizer_s (N = 1, per step), exposed_allreduce_s, compute_s_at_2 and
    optimizer_s_at_2 (N = 2), predicted_efficiency, predicted_own_compute (with the N = 2 run's
    own compute and optimizer times) and error (predicted_efficiency − measured, as a fraction). Empty where no group has runs at both N = 1 and N = 2 with the timings.
    """
    MODEL_CHECK.check(records)
    weak = weak_scaling(records)
    weak = weak[(weak["baseline_workers"] == 1) & (weak["num_workers"] == 2)]
    keys = present(records, WEAK_KEYS)
    timing = _step_timings(records, keys)
    one = timing[timing["num_workers"] == 1].drop(columns="num_workers")
    two = timing[timing["num_workers"] == 2].drop(columns="num_workers")
    two = two.rename(columns={"compute_s": "compute_s_at_2", "allreduce_s": "exposed_allreduce_s",
                              "optimizer_s": "optimizer_s_at_2"})
    table = weak[[*keys, "efficiency"]].rename(columns={"efficiency": "measured_efficiency"})
    table = table.merge(one.drop(columns="allreduce_s"), on=keys).merge(two, on=keys)
    base = table["compute_s"] + table["optimizer_s"]
    table["predicted_efficiency"] = base / (base + table["exposed_allreduce_s"])
    own = table["compute_s_at_2"] + table["optimizer_s_at_2"] + table["exposed_allreduce_s"]
    table["predicted_own_compute"] = base / own
    table["error"] = table["predicted_efficiency"] - table["measured_efficiency"]
    return table.dropna(subset=["predicted_efficiency"]).reset_index(drop=True)


def _step_timings(records: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Median per-step compute, exposed all-reduce and optimizer seconds per (group, N)."""
    rows = steady_rows(records).copy()
    if "time_optimizer_s" not in rows.columns:
        rows["time_optimizer_s"] = 0.0
    cols = {"time_compute_s": "compute_s", "time_allreduce_s": "allreduce_s", "time_optimizer_s": "optimizer_s"}
    g = rows.groupby([*keys, "num_workers"], dropna=False)[list(cols)].median()
    return g.rename(columns=cols).reset_index()


@dataclass(frozen=True)
class PublishedAllReduce:
    """A published all-reduce measurement and the inputs the model needs for it."""

    source: str
    cluster: Cluster
    ranks: int
    nbytes: float
    busbw: float
    """The measured bus bandwidth (bytes/s)."""


# Only measurements whose source names a repository, a file and a commit, with a ring all-reduce
# (NVLS off): NCCL picks NVLS on H100/H200 nodes from 2 MiB up and LL below 1 MiB, neither of which
# the model describes.
_H200_RING = ("stas00/ml-engineering network/benchmarks/results/all-reduce-8xH200.md@c53741b: 8x H200 SXM, "
              "NCCL 2.27.7, measured 2026-08-04, 'SHARP disabled' (ring): 367.61 GB/s; its payload is not "
              "stated there, the sweep's largest (16 GiB) is assumed (the model's α terms are < 0.1 % above 1 GiB)")

PUBLISHED_ALLREDUCE: tuple[PublishedAllReduce, ...] = (
    PublishedAllReduce(_H200_RING, Cluster(LINKS["nvlink4"]), 8, 16 * GIB, 367.61 * GB),
)


def check_published(points=PUBLISHED_ALLREDUCE) -> pd.DataFrame:
    """The model's bus bandwidth against each published one, for both algorithms.

    Columns: source, cluster, ranks, bytes, algorithm, measured_busbw_GBps, model_busbw_GBps and
    rel_error ((model − measured)/measured). One node: ring only (the algorithms coincide).
    """
    rows = []
    for p in points:
        nodes = -(-p.ranks // p.cluster.gpus_per_node)
        for algorithm in ("ring", "hierarchical") if nodes > 1 else ("ring",):
            seconds = allreduce_call_time(p.nbytes, p.ranks, p.cluster, algorithm)
            model = bus_bandwidth(p.nbytes, p.ranks, seconds)
            rows.append({"source": p.source, "cluster": str(p.cluster), "ranks": p.ranks, "bytes": p.nbytes,
                         "algorithm": algorithm, "measured_busbw_GBps": p.busbw / GB,
                         "model_busbw_GBps": model / GB, "rel_error": model / p.busbw - 1.0})
    return pd.DataFrame(rows)
