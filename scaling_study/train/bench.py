"""`scaling-study bench train`: samples/s of a plain PyTorch loop vs Ray Train with 1 and 2 workers.

All three train the same model on the same data at the same per-worker batch, one thread per
worker, in one invocation: the plain loop is the baseline, Ray 1-worker shows Ray Train's
overhead, and 2 workers at the same per-worker batch give the weak-scaling efficiency
E(2) = throughput(2) / (2 x throughput(1)). Throughput excludes the first window (start-up,
allocator warm-up) and evaluation.
"""
from __future__ import annotations

import time


def add_arguments(p) -> None:
    p.add_argument("--job", default="jobs/quickstart.yaml", help="the job whose model/data/optimizer to use")
    p.add_argument("--model", default="tiny", help="model spec (default: tiny)")
    p.add_argument("--batch", type=int, default=16, help="per-worker micro-batch (default 16)")
    p.add_argument("--seq-len", type=int, default=128, help="sequence length (default 128)")
    p.add_argument("--steps", type=int, default=40, help="measured steps per mode (default 40)")
    p.add_argument("--warmup", type=int, default=10, help="steps not measured (default 10)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker counts (default 1 2)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: local Ray)")


def _job(args, workers: int):
    from scaling_study.config import load_job

    w = args.warmup
    return load_job(args.job, [
        f"name=bench-train-{workers}w-{int(time.time())}", f"model.name={args.model}",
        f"model.max_seq_length={args.seq_len}", f"scaling.num_workers={workers}", "scaling.cpus_per_worker=1",
        f"train.per_worker_batch={args.batch}", f"train.global_batch={args.batch * workers}",
        f"train.steps={w + args.steps}", "eval.target=null", f"eval.every_steps={w}",
        "data.max_eval_examples=8", "output.dir=/tmp/scaling_study_bench", "output.max_failures=0"])


def plain_throughput(args) -> float:
    """A plain single-process PyTorch loop: same model, data, optimizer and batch; 1 thread."""
    import torch

    from scaling_study.models import build_model, load_tokenizer
    from scaling_study.optim import bert_param_groups, build_optimizer
    from scaling_study.train.tasks import build_task_data, resolve_data_files

    torch.set_num_threads(1)
    job = _job(args, 1)
    tok = load_tokenizer(job.model.name)
    data = build_task_data(job, resolve_data_files(job), tok).train_sets[args.seq_len]
    model = build_model(job.model.name, job.task, tok, seed=0).train()
    opt = build_optimizer(job.optimizer.name, bert_param_groups(model, job.optimizer.weight_decay), lr=1e-4,
                          **job.optimizer.args)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch, shuffle=True, drop_last=True)
    it = iter(loader)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        model(**batch).loss.backward()
        if job.train.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), job.train.max_grad_norm, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return args.steps * args.batch / (time.perf_counter() - t0)


def ray_throughput(args, workers: int) -> float:
    """Ray Train through the product's own worker loop; steady-state samples/s from its records."""
    from scaling_study.train.driver import run_job

    result = run_job(_job(args, workers), address=args.address, verbose=False, log_every=10**9)
    steady = result.records.iloc[1:]  # the first window holds start-up
    return float(steady["samples"].diff().sum() / steady["train_time_s"].diff().sum()) if len(steady) > 1 \
        else float(result.records["throughput"].iloc[-1])


def main(args) -> int:
    import ray
    import torch

    from scaling_study.ray_env import ensure_ray

    print(f"# scaling-study bench train --model {args.model} --batch {args.batch} --seq-len {args.seq_len} "
          f"--steps {args.steps}   (torch {torch.__version__}, 1 thread per worker)")
    base = plain_throughput(args)
    ensure_ray(args.address)
    try:
        rows = [("plain PyTorch, 1 process", 1, base)]
        rows += [(f"Ray Train, {w} worker{'s' * (w > 1)}", w, ray_throughput(args, w)) for w in args.workers]
    finally:
        ray.shutdown()
    one = next((thr for _, w, thr in rows[1:] if w == 1), None)
    print(f"{'mode':28} {'samples/s':>10} {'vs plain':>9} {'weak-scaling eff.':>18}")
    for label, w, thr in rows:
        eff = f"{thr / (w * one):.3f}" if one and label.startswith("Ray") else ""
        print(f"{label:28} {thr:10.2f} {thr / base:9.3f} {eff:>18}")
    return 0
