"""`scaling-study bench profile`: measure the device at hand and write a device profile (YAML).

For each `--model` × `--seq-len`, one process trains the job's task through the product's own
step (`TrainState.step`, built by `train.setup.build_worker`) at `--batch` samples per step, and
the step's own clocks split it into compute (data, forward, backward) and the optimizer step
(medians over `--rounds` windows of `--steps` steps, after `--warmup`). Where several CUDA
devices are visible, an NCCL all-reduce of `--allreduce-mib` MiB across all of them gives the
ring bus bandwidth (nccl-tests' busbw = bytes/time × 2(n−1)/n; NVLink SHARP is turned off with
NCCL_ALGO=Ring so that it is the ring the projection models).

The file is what `scaling-study report --device-profile FILE` reads (`answers.device`):

    device: NVIDIA H100 80GB HBM3
    accelerator: cuda
    date: 2026-12-06
    source: scaling-study bench profile --model tiny --seq-len 64 (torch 2.13.0, CUDA 13.0)
    models:
      - {model: tiny, task: squad, seq_len: 64, batch: 16, samples_per_s: ..., optimizer_step_s: ...}
    allreduce: {devices: 8, bytes: 268435456, busbw_GBps: ...}
"""
from __future__ import annotations

import datetime
import os
import socket
import statistics
from pathlib import Path

from scaling_study.bench import positive_int as _positive
from scaling_study.errors import UserError


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, type=Path, metavar="FILE.yaml", help="the profile to write")
    p.add_argument("--job", default="jobs/quickstart.yaml", help="the job whose task, data and optimizer to use")
    p.add_argument("--model", nargs="+", default=["tiny"], help="model specs (default: tiny)")
    p.add_argument("--seq-len", type=_positive, nargs="+", default=[128], help="sequence lengths (default 128)")
    p.add_argument("--batch", type=_positive, default=16, help="samples per step (default 16)")
    p.add_argument("--steps", type=_positive, default=20, help="measured steps per round (default 20)")
    p.add_argument("--warmup", type=_positive, default=5, help="steps not measured (default 5)")
    p.add_argument("--rounds", type=_positive, default=3, help="rounds; the median is kept (default 3)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda", help="the device to profile (default cuda)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None,
                   help="train.precision of the measured steps (default: bf16 on cuda, fp32 on cpu)")
    p.add_argument("--tokenizer", default=None, metavar="DIR",
                   help="model.tokenizer: a tokenizer folder for the named sizes (default: the packaged vocabulary)")
    p.add_argument("--allreduce-mib", type=_positive, default=256,
                   help="message size of the all-reduce measurement, with several CUDA devices (default 256)")


def main(args) -> int:
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device cuda: torch {torch.__version__} sees no CUDA device here; "
                        "profile the GPU where it is, or give --device cpu")
    entries = [measure(args, model, seq_len) for model in args.model for seq_len in args.seq_len]
    profile = {"device": device_name(args.device), "accelerator": args.device,
               "date": datetime.date.today().isoformat(),
               "source": f"scaling-study bench profile --job {args.job} --model {' '.join(args.model)} --seq-len "
                         f"{' '.join(map(str, args.seq_len))} --batch {args.batch} (torch {torch.__version__}"
                         f"{', CUDA ' + str(torch.version.cuda) if args.device == 'cuda' else ''})",
               "models": entries}
    devices = torch.cuda.device_count() if args.device == "cuda" else 0
    if devices > 1:
        profile["allreduce"] = allreduce_busbw(devices, args.allreduce_mib * 2**20)
    write_profile(profile, args.out)
    for e in entries:
        print(f"{e['model']} {e['task']} seq {e['seq_len']} batch {e['batch']}: {e['samples_per_s']:.1f} samples/s "
              f"(compute), optimizer step {e['optimizer_step_s'] * 1e3:.2f} ms")
    if "allreduce" in profile:
        print(f"all-reduce over {devices} devices: {profile['allreduce']['busbw_GBps']:.1f} GB/s bus bandwidth")
    print(f"wrote:   {args.out}")
    return 0


def measure(args, model: str, seq_len: int) -> dict:
    """One (model, sequence length): compute samples/s and optimizer seconds per step (medians)."""
    import torch

    from scaling_study.bench.train import _job
    from scaling_study.train.setup import build_worker
    from scaling_study.train.state import Window
    from scaling_study.train.tasks import resolve_data_files

    spec = _Spec(args, model, seq_len)
    job = _job(spec, 1)
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    state, task, plan = build_worker(job, resolve_data_files(job), rank=0, world=1, device=device,
                                     noise_scale=False)
    phase = plan.phases[0]
    batches = task.micro_batches(phase, rank=0, world=1, seed=job.train.seed, device=device)
    compute, optimizer = [], []
    for _ in range(args.warmup):
        state.step(phase, batches)
    for _ in range(args.rounds):
        state.settle()
        state.window = Window()  # a fresh window: this round's steps only
        for _ in range(args.steps):
            state.step(phase, batches)
        state.settle()
        compute.append(state.window.per_step("compute"))
        optimizer.append(state.window.per_step("optimizer"))
    return {"model": model, "task": job.task, "seq_len": seq_len, "batch": args.batch, "precision": spec.precision,
            "samples_per_s": float(args.batch / statistics.median(compute)),
            "optimizer_step_s": float(statistics.median(optimizer))}


class _Spec:
    """The fields `bench.train._job` reads, for one (model, sequence length)."""

    def __init__(self, args, model: str, seq_len: int):
        self.job, self.model, self.seq_len, self.batch = args.job, model, seq_len, args.batch
        self.grad_accum, self.warmup, self.steps, self.device = 1, args.warmup, args.steps * args.rounds, args.device
        self.precision = precision(args)
        self.tokenizer, self.data_dir = args.tokenizer, None


def precision(args) -> str:
    """The precision profiled: `--precision`, else bf16 on a GPU (its tensor cores) and fp32 on a CPU."""
    return args.precision or ("bf16" if args.device == "cuda" else "fp32")


def device_name(device: str) -> str:
    import platform

    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def allreduce_busbw(devices: int, nbytes: int) -> dict:
    """Ring all-reduce bus bandwidth over `devices` GPUs (one process each, NCCL_ALGO=Ring)."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.get_context("spawn").Manager().dict()
    mp.spawn(_allreduce_rank, args=(devices, nbytes, port, results), nprocs=devices, join=True)
    return {"devices": devices, "bytes": nbytes, "busbw_GBps": float(results[0]) / 1e9}


def _allreduce_rank(rank: int, world: int, nbytes: int, port: int, results, iters: int = 20) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(NCCL_ALGO="Ring", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world)
    try:
        x = torch.ones(nbytes // 4, device="cuda")
        for _ in range(5):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            dist.all_reduce(x)
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1e3 / iters
        if rank == 0:
            results[0] = nbytes / seconds * 2 * (world - 1) / world
    finally:
        dist.destroy_process_group()


def write_profile(profile: dict, out: Path) -> None:
    """Write `profile` as YAML after checking it reads back as a device profile."""
    import yaml

    from scaling_study.answers.device import measured_from_dict

    measured_from_dict(profile, str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")
