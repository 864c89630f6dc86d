"""`scaling-study bench train`: samples/s of a plain PyTorch loop vs Ray Train with 1 and 2 workers.

All rows train the same model on the same data at the same per-worker batch, one thread per
worker, in one invocation: the plain loop is the baseline, Ray 1-worker shows Ray Train's
overhead, and 2 workers at the same per-worker batch give the weak-scaling efficiency
E(2) = throughput(2) / (2 x throughput(1)). Two rows without Ray split a shortfall of E(2) into
its causes: 2 independent plain processes (what the cores allow with no communication at all)
and 2 processes under DDP over gloo (adds the gradient all-reduce); what is left between that and
Ray Train's 2 workers is Ray's own share. Ray throughput excludes the first window (start-up,
allocator warm-up) and evaluation; the plain loops time the steps after `--warmup`.
`--grad-accum K` makes every row accumulate K micro-batches per optimizer step (DDP all-reduces
once per step, Determined's aggregation frequency), which divides the communication per sample
by K.
"""
from __future__ import annotations

import time

from scaling_study.bench_cli import positive_int as _positive


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
    p.add_argument("--address", default=None, help="Ray cluster address (default: local Ray)")


def _job(args, workers: int):
    from scaling_study.config import load_job

    w = args.warmup
    return load_job(args.job, [
        f"name=bench-train-{workers}w-{int(time.time())}", f"model.name={args.model}",
        f"model.max_seq_length={args.seq_len}", f"scaling.num_workers={workers}", "scaling.cpus_per_worker=1",
        f"train.per_worker_batch={args.batch}", f"train.grad_accum={args.grad_accum}",
        f"train.global_batch={args.batch * workers * args.grad_accum}",
        f"train.steps={w + args.steps}", "eval.target=null", f"eval.every_steps={w}",
        "data.max_eval_examples=8", "output.dir=/tmp/scaling_study_bench", "output.max_failures=0"])


def plain_throughput(args, *, rank: int = 0, world: int = 1, ddp: bool = False, barrier=None) -> float:
    """A plain PyTorch loop, 1 thread: same model, data, optimizer and batch. With `world` > 1 it
    is one of several processes, each on its own shard, wrapped in DDP when `ddp` (accumulating
    `--grad-accum` micro-batches under `no_sync`, as the Ray worker does); returns this process's
    samples/s, timed from a common start (`barrier`) after the warm-up steps."""
    import contextlib

    import torch

    from scaling_study.models import build_model, load_tokenizer
    from scaling_study.optim import bert_param_groups, build_optimizer
    from scaling_study.train.tasks import build_task_data, resolve_data_files

    torch.set_num_threads(1)
    job = _job(args, 1)
    tok = load_tokenizer(job.model.name)
    data = build_task_data(job, resolve_data_files(job), tok).train_sets[args.seq_len]
    model = build_model(job.model.name, job.task, tok, seed=0).train()
    params = bert_param_groups(model, job.optimizer.weight_decay)
    opt = build_optimizer(job.optimizer.name, params, lr=1e-4, **job.optimizer.args)
    sparse = []
    if ddp:  # as the Ray worker wraps it (scaling_study.train.setup)
        from scaling_study.train.setup import _use_sparse_embedding_grads

        sparse = _use_sparse_embedding_grads(job, model, torch.device("cpu"), world)
        model = torch.nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True)
    sampler = torch.utils.data.DistributedSampler(data, num_replicas=world, rank=rank, seed=0, drop_last=True)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch, sampler=sampler, drop_last=True)
    it = iter(loader)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if barrier is not None:
                barrier.wait()
            t0 = time.perf_counter()
        for i in range(args.grad_accum):
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            with model.no_sync() if ddp and i < args.grad_accum - 1 else contextlib.nullcontext():
                (model(**batch).loss / args.grad_accum).backward()
        for p in sparse:
            p.grad = p.grad.to_dense()
        if job.train.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), job.train.max_grad_norm, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return args.steps * args.batch * args.grad_accum / (time.perf_counter() - t0)


def _process(rank: int, args, world: int, ddp: bool, port: int, barrier, results) -> None:
    import os

    import torch.distributed as dist

    if ddp:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results.put(plain_throughput(args, rank=rank, world=world, ddp=ddp, barrier=barrier))
    finally:
        if ddp:
            dist.destroy_process_group()


def processes_throughput(args, world: int, *, ddp: bool) -> float:
    """`world` plain loops at once without Ray: independent (`ddp=False`: the ceiling the
    hardware allows, the cores sharing caches and memory bandwidth) or as one DDP job over gloo
    (adds the gradient all-reduce). Returns their summed samples/s."""
    import socket

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(world), ctx.SimpleQueue()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [ctx.Process(target=_process, args=(r, args, world, ddp, port, barrier, results)) for r in range(world)]
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


def one_round(args) -> list[tuple[str, int, float, str | None]]:
    """Every mode once: (label, workers, samples/s, label of the 1-worker row its efficiency uses)."""
    import ray

    from scaling_study.ray_env import ensure_ray

    plain = "plain PyTorch, 1 process"
    rows = [(plain, 1, plain_throughput(args), None)]
    for w in (w for w in args.workers if w > 1):
        rows.append((f"{w} plain processes, no comm.", w, processes_throughput(args, w, ddp=False), plain))
        rows.append((f"{w} processes, DDP/gloo, no Ray", w, processes_throughput(args, w, ddp=True), plain))
    ensure_ray(args.address)  # up only for the Ray rows: its daemons would tax the others
    try:
        label = {w: f"Ray Train, {w} worker{'s' * (w > 1)}" for w in args.workers}
        rows += [(label[w], w, ray_throughput(args, w), label[1] if w > 1 and 1 in label else None)
                 for w in args.workers]
    finally:
        ray.shutdown()
    return rows


def main(args) -> int:
    import statistics

    import torch

    print(f"# scaling-study bench train --model {args.model} --batch {args.batch} --grad-accum {args.grad_accum} "
          f"--seq-len {args.seq_len} --steps {args.steps} --rounds {args.rounds}   "
          f"(torch {torch.__version__}, 1 thread per worker)")
    rounds = []
    for r in range(args.rounds):
        rows = one_round(args)
        thr = {label: t for label, _, t, _ in rows}
        rounds.append({label: (t, t / rows[0][2], t / (w * thr[ref]) if ref else None) for label, w, t, ref in rows})
        print(f"round {r + 1}: " + ", ".join(f"{label} {t:.1f}" for label, _, t, _ in rows), flush=True)
    print(f"\n{'mode (median of rounds)':32} {'samples/s':>10} {'vs plain':>9} {'weak-scaling eff.':>18}")
    for label in rounds[0]:
        t, vs, eff = (statistics.median(x[label][i] for x in rounds) if rounds[0][label][i] is not None else None
                      for i in range(3))
        print(f"{label:32} {t:10.2f} {vs:9.3f} {'' if eff is None else f'{eff:.3f}':>18}")
    print("weak-scaling efficiency = samples/s of N / (N x the 1-worker figure of its kind in the same round: "
          "the plain loop for the no-Ray rows, Ray Train with 1 worker for the Ray rows)")
    return 0
