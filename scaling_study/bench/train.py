"""`scaling-study bench train`: samples/s of one process without Ray vs Ray Train with 1 and 2 workers.

All rows train the same job (model, data, optimizer, schedule) at the same per-worker batch, one
thread per worker, in one invocation, and all take the product's own optimizer step
(`TrainState.step`, built by `train.setup.build_worker`, the code Ray Train's workers build
with): the single process without Ray is the baseline, Ray 1-worker shows Ray Train's overhead,
and 2 workers at the same per-worker batch give the weak-scaling efficiency
E(2) = throughput(2) / (2 x throughput(1)). Two rows without Ray split a shortfall of E(2) into
its causes: 2 independent processes (what the hardware allows with no communication at all) and
2 processes under DDP (adds the gradient all-reduce, gloo on CPU, NCCL on GPU); what is left
between that and Ray Train's 2 workers is Ray's own share. Ray throughput excludes the first
window (start-up, allocator warm-up) and evaluation; the rows without Ray time the steps after
`--warmup`, from a common start. `--grad-accum K` makes every row accumulate K micro-batches per
optimizer step (DDP all-reduces once per step, Determined's aggregation frequency), which divides
the communication per sample by K. `--device cuda`: one GPU per process (and per Ray worker),
with a column of model FLOPs utilisation per GPU (`scaling_study.bench.mfu`) for the named sizes;
`--precision bf16` for the GPU's tensor cores. `--no-ray` keeps to the rows without Ray (a GPU
machine without Ray, say): `--model base` and `--model large` give BERT-base's and -large's
samples/s and MFU.

Every row measures the gradient noise scale as training does (a DDP communication hook; with one
process, micro-batch gradient hooks when K > 1). `--compare-noise-scale` runs each row without Ray
that measures it once more right after, with it off, and prints what it costs.
`--compare-ray-quiet` adds Ray Train with the most workers on a second local Ray started with Ray's
own defaults for the services `ensure_ray` leaves out (`ray_env.LEAN_LOCAL_RAY`), the two local Rays
taking turns to go first from round to round, and prints each one's samples/s against the DDP row
without Ray of the same round.
"""
from __future__ import annotations

import time

from scaling_study.bench import positive_int as _positive
from scaling_study.errors import UserError

PLAIN = "plain PyTorch, 1 process"
NOISE_OFF = ", noise scale off"
RAY_DEFAULTS = ", Ray's default services"


def add_arguments(p) -> None:
    p.add_argument("--job", default="jobs/quickstart.yaml", help="the job whose model/data/optimizer to use")
    p.add_argument("--model", default="tiny", help="model spec (default: tiny)")
    p.add_argument("--batch", type=_positive, default=16, help="per-worker micro-batch (default 16)")
    p.add_argument("--seq-len", type=_positive, default=128, help="sequence length (default 128)")
    p.add_argument("--grad-accum", type=_positive, default=1,
                   help="micro-batches per optimizer step, all-reduced once (default 1): the aggregation "
                        "frequency; the global batch is batch x workers x this")
    p.add_argument("--steps", type=_positive, default=60, help="measured optimizer steps per mode (default 60)")
    p.add_argument("--warmup", type=_positive, default=10, help="steps not measured (default 10)")
    p.add_argument("--workers", type=_positive, nargs="+", default=[1, 2], help="Ray worker counts (default 1 2)")
    p.add_argument("--rounds", type=_positive, default=3,
                   help="rounds of all modes; ratios are taken within a round, then the median (default 3)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu (gloo), or cuda: one GPU per process, NCCL, and scaling.use_gpu for the Ray rows "
                        "(default cpu)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="train.precision of every row (fp16: --device cuda only; default fp32)")
    p.add_argument("--tokenizer", default=None, metavar="DIR",
                   help="model.tokenizer: a tokenizer folder for the named sizes (default: the packaged vocabulary)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="data.dir: where the generated data goes")
    p.add_argument("--no-ray", action="store_true", help="only the rows without Ray (Ray need not be installed)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: local Ray)")
    p.add_argument("--compare-noise-scale", action="store_true",
                   help="run each row without Ray that measures the gradient noise scale (DDP; one process "
                        "with --grad-accum > 1) again with it off, and print its cost")
    p.add_argument("--compare-ray-quiet", action="store_true",
                   help="run Ray Train with the most workers once more on a local Ray with Ray's default services "
                        "(metrics export, usage stats) and print both against DDP without Ray")


def _job(args, workers: int):
    from scaling_study.config import load_job

    w = args.warmup
    return load_job(args.job, [
        f"name=bench-train-{workers}w-{int(time.time())}", f"model.name={args.model}",
        f"model.max_seq_length={args.seq_len}", f"scaling.num_workers={workers}", "scaling.cpus_per_worker=1",
        f"scaling.use_gpu={'true' if args.device == 'cuda' else 'false'}",
        f"train.per_worker_batch={args.batch}", f"train.grad_accum={args.grad_accum}",
        f"train.global_batch={args.batch * workers * args.grad_accum}",
        f"train.steps={w + args.steps}", "eval.target=null", f"eval.every_steps={w}",
        "data.max_eval_examples=8", "output.dir=/tmp/scaling_study_bench", "output.max_failures=0",
        f"train.precision={args.precision}",
        *([f"model.tokenizer={args.tokenizer}"] if args.tokenizer else []),
        *([f"data.dir={args.data_dir}"] if args.data_dir else [])])


def data_files(args):
    """The job's train/dev files, generated once here before any process reads them."""
    from scaling_study.train.tasks import resolve_data_files

    return resolve_data_files(_job(args, 1))


def check_device(args) -> None:
    """`--device cuda` needs CUDA, and a GPU for each process of the largest row."""
    if args.device != "cuda":
        return
    import torch

    need = max(args.workers)
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have == 0:
        raise UserError(f"--device cuda: torch {torch.__version__} sees no CUDA device here; use --device cpu")
    if have < need:
        raise UserError(f"--device cuda: the {need}-worker rows take one GPU per process and {have} CUDA "
                        f"device(s) are visible; lower --workers to at most {have} or use --device cpu")


def _device(args, rank: int):
    import torch

    return torch.device("cuda", rank) if args.device == "cuda" else torch.device("cpu")


def plain_throughput(args, files, *, rank: int = 0, world: int = 1, ddp: bool = False, barrier=None,
                     noise_scale: bool = True) -> float:
    """This process's samples/s over `--steps` of the product's step, after `--warmup` steps,
    timed from a common start (`barrier`). With `world` > 1 it is one of several processes, each
    on its own shard: rank `rank` of one DDP job when `ddp` (the process group is initialised),
    else an independent 1-worker run. `noise_scale`: measure the gradient noise scale, as
    training does."""
    from scaling_study.train.setup import build_worker

    job = _job(args, world if ddp else 1)
    device = _device(args, rank)
    state, task, plan = build_worker(job, files, rank=rank if ddp else 0, world=world if ddp else 1, device=device,
                                     noise_scale=noise_scale)
    phase = plan.phases[0]
    batches = task.micro_batches(phase, rank=rank, world=world, seed=job.train.seed, device=device)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            state.settle()  # the warm-up's steps done on the device (the step itself never waits)
            if barrier is not None:
                barrier.wait()
            t0 = time.perf_counter()
        state.step(phase, batches)
    state.settle()  # every timed step done
    return args.steps * phase.per_worker_batch * phase.grad_accum / (time.perf_counter() - t0)


def _process(rank: int, args, files, world: int, ddp: bool, noise_scale: bool, port: int, barrier, results) -> None:
    import os

    import torch
    import torch.distributed as dist

    if args.device == "cuda":
        torch.cuda.set_device(rank)
    if ddp:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo", rank=rank, world_size=world)
    try:
        results.put(plain_throughput(args, files, rank=rank, world=world, ddp=ddp, barrier=barrier,
                                     noise_scale=noise_scale))
    finally:
        if ddp:
            dist.destroy_process_group()


def processes_throughput(args, files, world: int, *, ddp: bool, noise_scale: bool = True) -> float:
    """`world` processes at once without Ray: independent (`ddp=False`: the ceiling the hardware
    allows, the cores sharing caches and memory bandwidth) or as one DDP job (adds the gradient
    all-reduce). Returns their summed samples/s."""
    import socket

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(world), ctx.SimpleQueue()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [ctx.Process(target=_process, args=(r, args, files, world, ddp, noise_scale, port, barrier, results))
             for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise RuntimeError(f"bench train: a {'DDP' if ddp else 'plain'} process failed (exit codes "
                           f"{[p.exitcode for p in procs]})")
    return sum(results.get() for _ in range(world))


def ray_throughput(args, workers: int) -> float:
    """Ray Train through the product's own worker loop; steady-state samples/s from its records."""
    from scaling_study.train.driver import run_job

    result = run_job(_job(args, workers), address=args.address, verbose=False, log_every=10**9)
    steady = result.records.iloc[1:]  # the first window holds start-up
    return float(steady["samples"].diff().sum() / steady["train_time_s"].diff().sum()) if len(steady) > 1 \
        else float(result.records["throughput"].iloc[-1])


def no_ray_rows(args, files) -> list[tuple[str, int, float, str | None]]:
    """The rows without Ray (see `one_round`); with `--compare-noise-scale`, each row that
    measures the noise scale is followed by the same row with it off."""
    comm = "NCCL" if args.device == "cuda" else "gloo"
    rows = [(PLAIN, 1, plain_throughput(args, files), None)]
    if args.compare_noise_scale and args.grad_accum > 1:
        rows.append((PLAIN + NOISE_OFF, 1, plain_throughput(args, files, noise_scale=False), None))
    for w in (w for w in args.workers if w > 1):
        rows.append((f"{w} plain processes, no comm.", w, processes_throughput(args, files, w, ddp=False), PLAIN))
        ddp = f"{w} processes, DDP/{comm}, no Ray"
        rows.append((ddp, w, processes_throughput(args, files, w, ddp=True), PLAIN))
        if args.compare_noise_scale:
            rows.append((ddp + NOISE_OFF, w, processes_throughput(args, files, w, ddp=True, noise_scale=False), PLAIN))
    return rows


def ray_label(workers: int) -> str:
    return f"Ray Train, {workers} worker{'s' * (workers > 1)}"


def ray_rows(args, workers: list[int], *, lean: bool = True) -> list[tuple[str, int, float, str | None]]:
    """Ray Train with each of `workers`, on a local Ray of its own (`lean`: see `ensure_ray`) that
    is up only for these rows (its daemons would tax the others), or on `--address`."""
    import ray

    from scaling_study.ray_env import ensure_ray

    suffix = "" if lean else RAY_DEFAULTS
    ensure_ray(args.address, lean=lean)
    try:
        return [(ray_label(w) + suffix, w, ray_throughput(args, w),
                 ray_label(1) if w > 1 and 1 in args.workers and lean else None) for w in workers]
    finally:
        ray.shutdown()


def one_round(args, files, index: int = 0) -> list[tuple[str, int, float, str | None]]:
    """Every mode once: (label, workers, samples/s, label of the 1-worker row its efficiency uses).
    With `--compare-ray-quiet` the two local Rays take turns to go first (odd `index`: Ray's
    defaults first); the rows keep one order."""
    rows = no_ray_rows(args, files)
    if args.no_ray:
        return rows
    if not args.compare_ray_quiet:
        return rows + ray_rows(args, args.workers)
    if index % 2:
        defaults = ray_rows(args, [max(args.workers)], lean=False)
        return rows + ray_rows(args, args.workers) + defaults
    return rows + ray_rows(args, args.workers) + ray_rows(args, [max(args.workers)], lean=False)


def main(args) -> int:
    import statistics

    import torch

    check_device(args)
    if args.compare_ray_quiet and args.address:
        raise UserError(f"--compare-ray-quiet with --address {args.address}: the comparison starts two local Rays "
                        "of its own; leave --address out")
    files = data_files(args)
    print(f"# scaling-study bench train --model {args.model} --batch {args.batch} --grad-accum {args.grad_accum} "
          f"--seq-len {args.seq_len} --steps {args.steps} --rounds {args.rounds} --device {args.device}   "
          f"(torch {torch.__version__}, 1 thread per worker)")
    rounds = []
    for r in range(args.rounds):
        rows = one_round(args, files, r)
        thr = {label: t for label, _, t, _ in rows}
        rounds.append({label: (t, t / rows[0][2], t / (w * thr[ref]) if ref else None) for label, w, t, ref in rows})
        print(f"round {r + 1}: " + ", ".join(f"{label} {t:.1f}" for label, _, t, _ in rows), flush=True)
    width = max(32, *map(len, rounds[0]))
    workers = {label: w for label, w, _, _ in rows}
    print(f"\n{'mode (median of rounds)':{width}} {'samples/s':>10} {'vs plain':>9} {'weak-scaling eff.':>18} "
          f"{'MFU per GPU':>12}")
    for label in rounds[0]:
        t, vs, eff = (statistics.median(x[label][i] for x in rounds) if rounds[0][label][i] is not None else None
                      for i in range(3))
        util = model_flops_utilization(args, t / workers[label])
        print(f"{label:{width}} {t:10.2f} {vs:9.3f} {'' if eff is None else f'{eff:.3f}':>18} "
              f"{'' if util is None else f'{100 * util:.1f} %':>12}")
    print("weak-scaling efficiency = samples/s of N / (N x the 1-worker figure of its kind in the same round: "
          "the plain loop for the no-Ray rows, Ray Train with 1 worker for the Ray rows)")
    for line in noise_scale_cost(rounds) + ray_quiet_effect(rounds, max(args.workers)):
        print(line)
    return 0


def model_flops_utilization(args, samples_per_s: float) -> float | None:
    """One GPU's MFU at `samples_per_s` (`scaling_study.bench.mfu`), for the named sizes on CUDA;
    None on a CPU, for other models, or on a GPU without a known peak."""
    from scaling_study.bench.mfu import mfu, peak_tflops, train_flops_per_sample
    from scaling_study.models import MODEL_SIZES

    if args.device != "cuda" or args.model not in MODEL_SIZES:
        return None
    import torch

    size = MODEL_SIZES[args.model]
    flops = train_flops_per_sample(layers=size["num_hidden_layers"], hidden=size["hidden_size"],
                                   intermediate=size["intermediate_size"], seq_len=args.seq_len)
    return mfu(samples_per_s, flops, peak_tflops(torch.cuda.get_device_name(0), args.precision))


def no_ray_measure(*, model: str, batch: int, device: str, precision: str, steps: int, warmup: int,
                   tokenizer: str | None = None, data_dir=None) -> str:
    """One process's samples/s (and MFU) of `model` without Ray, as `bench train --no-ray
    --workers 1` measures it; one line."""
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--no-ray", "--workers", "1", "--rounds", "1", "--model", model, "--batch", str(batch),
                         "--device", device, "--precision", precision, "--steps", str(steps), "--warmup", str(warmup),
                         *(["--tokenizer", tokenizer] if tokenizer else []),
                         *(["--data-dir", str(data_dir)] if data_dir else [])])
    check_device(args)
    thr = plain_throughput(args, data_files(args))
    util = model_flops_utilization(args, thr)
    return f"{thr:.1f} samples/s" + (f", MFU {100 * util:.1f} %" if util is not None else ", MFU n/a")


def noise_scale_cost(rounds: list[dict]) -> list[str]:
    """One line per pair of rows with and without the noise scale: samples/s with it over
    samples/s without it, within each round, median of rounds (1.000: it costs nothing)."""
    import statistics

    lines = []
    for off in (label for label in rounds[0] if label.endswith(NOISE_OFF)):
        on = off[:-len(NOISE_OFF)]
        ratio = statistics.median(r[on][0] / r[off][0] for r in rounds)
        lines.append(f"noise scale: {on}: {ratio:.3f} x the samples/s without it")
    return lines


def ray_quiet_effect(rounds: list[dict], workers: int) -> list[str]:
    """With `--compare-ray-quiet`: Ray Train with `workers` on each local Ray against the DDP row
    without Ray of the same round (where there is one), and the lean Ray's samples/s over the
    other's; medians of rounds."""
    import statistics

    lean = ray_label(workers)
    other = lean + RAY_DEFAULTS
    if other not in rounds[0]:
        return []
    ddp = next((label for label in rounds[0] if label.startswith(f"{workers} processes, DDP/")), None)
    lines = [f"local Ray: {label}: {statistics.median(r[label][0] / r[ddp][0] for r in rounds):.3f} x the "
             f"samples/s of {ddp}" for label in (other, lean) if ddp]
    ratio = statistics.median(r[lean][0] / r[other][0] for r in rounds)
    lines.append(f"local Ray: {lean} on ensure_ray's lean Ray: {ratio:.3f} x the samples/s with Ray's default "
                 "services (1.000: no effect)")
    return lines
