"""Projected step time, weak-scaling efficiency and time to target at 8 … 1024 GPUs.

References: the α-β (latency-bandwidth) cost model of collectives (Thakur, Rabenseifner & Gropp
2005, "Optimization of Collective Communication Operations in MPICH"); NCCL's own tuning model
(`src/graph/tuning.cc`: per-step latencies by link type, base latency per call); the bus
bandwidth convention of nccl-tests (`doc/PERFORMANCE.md`). Constants and their sources are in
docs/answers.md and on each `Link`.

The model:
- Ring all-reduce of S bytes over N ranks: 2(N−1)/N · S/β + 2(N−1)·α, with β the link's bus
  bandwidth as nccl-tests reports it. Across M nodes a flat ring is limited by the slower of the
  intra-node link and the node's network bandwidth (NICs × per-NIC β); of its 2(N−1) steps,
  2M cross the network at α_net and the rest pay α_intra (NCCL's latency model, tuning.cc).
- Hierarchical all-reduce (g GPUs per node): intra-node reduce-scatter, g parallel inter-node
  rings on 1/g shards each, intra-node all-gather:
  2(g−1)/g · S/β_intra + 2(g−1)·α_intra + 2(M−1)/M · S/β_node + 2(M−1)·α_net.
- DDP all-reduces in buckets (25 MiB by default); each bucket is one call and pays the latency
  terms plus NCCL's base latency once.
- Step time = k · micro-batch compute + optimizer + exposed all-reduce, where the exposed part is
  what backward does not hide: (1 − overlap) · all-reduce, and never less than the all-reduce
  minus one micro-batch's compute (only the last micro-batch's backward overlaps it).
  Weak-scaling efficiency E(N) = step(1) / step(N) at a fixed per-worker batch and k.
- Time to target at N = S(B) · step(N) with B = N · per-worker batch · k and S(B) from the
  tradeoff fit (`tradeoff.py`), with its bootstrap interval; beyond the measured batches only
  where asked (`extrapolate`), bounded below by S_min steps and E_min samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling_study.answers.links import ALGORITHMS, US, Cluster
from scaling_study.answers.tradeoff import TradeoffFit
from scaling_study.errors import UserError

DDP_BUCKET_BYTES = 25 * 2**20  # torch DistributedDataParallel(bucket_cap_mb=25)
NCCL_BASE_LATENCY = 8.4 * US  # tuning.cc@b647562 baseLat, Ring/Simple (the protocol of MiB-size buckets)
WORKER_COUNTS = (8, 16, 32, 64, 128, 256, 512, 1024)
GRAD_ELEMENT_BYTES = 4  # fp32 gradients, also under bf16/fp16 autocast (parameters stay fp32)


def ring_allreduce_time(nbytes: float, n: int, bandwidth: float, latency: float) -> float:
    """2(n−1)/n · bytes/β + 2(n−1)·α; 0 for one rank."""
    if n <= 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * latency


def allreduce_call_time(nbytes: float, n: int, cluster: Cluster, algorithm: str = "ring") -> float:
    """Seconds for one all-reduce call of `nbytes` over `n` GPUs (module docstring)."""
    if algorithm not in ALGORITHMS:
        raise UserError(f"--algorithm {algorithm!r}: valid algorithms are {', '.join(ALGORITHMS)}")
    if n <= 1:
        return 0.0
    g = min(n, cluster.gpus_per_node)
    nodes = math.ceil(n / g)
    if nodes > 1 and cluster.network is None:
        raise UserError(f"{n} GPUs need {nodes} nodes of {g}: give the cluster a network (e.g. +net400)")
    intra, net = cluster.intra, cluster.network
    if nodes == 1:
        return NCCL_BASE_LATENCY + ring_allreduce_time(nbytes, n, intra.bandwidth, intra.latency)
    if algorithm == "ring":
        bw = min(intra.bandwidth, cluster.node_bandwidth)
        inter_steps = 2 * nodes  # tuning.cc@b647562: nInterSteps = 2·nNodes for an all-reduce
        steps_latency = (2 * (n - 1) - inter_steps) * intra.latency + inter_steps * net.latency
        return NCCL_BASE_LATENCY + 2 * (n - 1) / n * nbytes / bw + steps_latency
    inside = ring_allreduce_time(nbytes, g, intra.bandwidth, intra.latency)
    across = ring_allreduce_time(nbytes, nodes, cluster.node_bandwidth, net.latency)
    return NCCL_BASE_LATENCY + inside + across


def allreduce_time(grad_bytes: float, n: int, cluster: Cluster, algorithm: str = "ring",
                   bucket_bytes: float | None = DDP_BUCKET_BYTES) -> float:
    """Seconds to all-reduce a model's gradients in DDP buckets (one call when bucket_bytes is None)."""
    if n <= 1:
        return 0.0
    if not bucket_bytes or grad_bytes <= bucket_bytes:
        return allreduce_call_time(grad_bytes, n, cluster, algorithm)
    full, rest = divmod(grad_bytes, bucket_bytes)
    time = full * allreduce_call_time(bucket_bytes, n, cluster, algorithm)
    return time + (allreduce_call_time(rest, n, cluster, algorithm) if rest else 0.0)


def bus_bandwidth(nbytes: float, n: int, seconds: float) -> float:
    """nccl-tests' all-reduce busbw: bytes/time · 2(n−1)/n."""
    return nbytes / seconds * 2 * (n - 1) / n


@dataclass(frozen=True)
class Profile:
    """What one worker computes per step, the projection's inputs."""

    compute_s_per_sample: float
    """Data, forward and backward seconds per sample (all-reduce excluded)."""
    grad_bytes: float
    """Bytes all-reduced per step: parameters × bytes per gradient element."""
    per_worker_batch: int
    """The per-worker batch the compute was measured at (the largest one `project` considers)."""
    optimizer_s: float = 0.0
    """Seconds of the optimizer step (the same at every N: each worker steps the whole model)."""
    overlap: float = 0.0
    """Fraction of the all-reduce hidden behind backward (0: none, the conservative default)."""
    device: str = ""
    """Where the compute figures come from (records on a device, or a device profile)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap <= 1.0:
            raise ValueError(f"overlap={self.overlap!r}: expected a fraction in [0, 1]")

    def per_worker_batches(self) -> tuple[int, ...]:
        """The measured per-worker batch and every halving of it down to 1 (compute per sample
        held at the measured value: on a GPU smaller batches are, if anything, slower per sample)."""
        out, b = [], self.per_worker_batch
        while b >= 1:
            out.append(b)
            b //= 2
        return tuple(out)


def step_time(profile: Profile, n: int, accum: int, cluster: Cluster,
              algorithm: str = "ring", per_worker_batch: int | None = None) -> dict[str, float]:
    """Seconds per optimizer step at `n` workers, accumulation `accum` and `per_worker_batch`
    (default: the profile's): compute, allreduce (all of it), exposed (what backward does not
    hide), optimizer and step (their sum)."""
    micro = (per_worker_batch or profile.per_worker_batch) * profile.compute_s_per_sample
    comm = allreduce_time(profile.grad_bytes, n, cluster, algorithm)
    exposed = max((1.0 - profile.overlap) * comm, comm - micro)
    compute = accum * micro
    return {"compute_s": compute, "allreduce_s": comm, "exposed_allreduce_s": exposed,
            "optimizer_s": profile.optimizer_s, "step_time_s": compute + exposed + profile.optimizer_s}


def project(profile: Profile, cluster: Cluster, algorithm: str = "ring",
            workers=WORKER_COUNTS, accums=(1, 2, 4, 8), per_worker_batches=None) -> pd.DataFrame:
    """Step time, throughput and weak-scaling efficiency per (num_workers, per_worker_batch, grad_accum).

    Columns: cluster, algorithm, device, num_workers, per_worker_batch, grad_accum, global_batch,
    compute_s, allreduce_s, exposed_allreduce_s, optimizer_s, step_time_s, throughput
    (samples/s) and efficiency (step time at one worker over step time at N, same per-worker
    batch and accumulation). `per_worker_batches`: default the profile's own only.
    """
    rows = []
    for b in per_worker_batches or (profile.per_worker_batch,):
        for k in accums:
            base = step_time(profile, 1, k, cluster, algorithm, b)["step_time_s"]
            for n in workers:
                t = step_time(profile, n, k, cluster, algorithm, b)
                batch = n * b * k
                rows.append({"cluster": str(cluster), "algorithm": algorithm, "device": profile.device,
                             "num_workers": n, "per_worker_batch": b, "grad_accum": k, "global_batch": batch,
                             **t, "throughput": batch / t["step_time_s"], "efficiency": base / t["step_time_s"]})
    return pd.DataFrame(rows)


def with_time_to_target(table: pd.DataFrame, fit: TradeoffFit, extrapolate: bool = False) -> pd.DataFrame:
    """Add S(B) from the fit and the time it takes, each with its bootstrap interval.

    Columns added: in_range (B within the fit's measured batches), steps_to_target, steps_lo,
    steps_hi, samples_to_target, time_to_target_s, time_lo_s and time_hi_s (steps × step time).
    Outside the measured range all are NaN unless `extrapolate`; extrapolated values are bounded
    below by S_min steps and E_min samples, which the fit approaches as B grows.
    """
    out = table.copy()
    batch = out["global_batch"].to_numpy(dtype=float)
    out["in_range"] = fit.in_range(batch)
    keep = out["in_range"].to_numpy() | extrapolate
    lo, hi = fit.steps_interval(batch)
    for name, values in (("steps_to_target", fit.steps(batch)), ("steps_lo", lo), ("steps_hi", hi),
                         ("samples_to_target", fit.samples(batch))):
        out[name] = np.where(keep, values, np.nan)
    for name, steps in (("time_to_target_s", "steps_to_target"), ("time_lo_s", "steps_lo"), ("time_hi_s", "steps_hi")):
        out[name] = out[steps] * out["step_time_s"]
    return out
