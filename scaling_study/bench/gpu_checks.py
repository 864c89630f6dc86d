"""The bodies of the GPU check's core (`scaling_study.bench.gpu_check` runs them): each takes a
`Context`, returns one line of what it measured, and raises where something is wrong.

The checkpoint check runs training in child processes of this module
(``python -m scaling_study.bench.gpu_checks first|resume ...``) so that one of them can be
killed with SIGKILL, as a lost machine would be.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from scaling_study.bench.gpu_check_context import CheckFailed, Context, host_syncs

RESUME_AT, AFTER = 4, 3
"""The checkpoint check writes its checkpoint after step 4 and compares the 3 steps after it."""


def _build(ctx: Context, job, wrap=None):
    """The product's worker state for `job` on the context's device (`build_worker`)."""
    from scaling_study.train.setup import build_worker
    from scaling_study.train.tasks import resolve_data_files

    state, task, plan = build_worker(job, resolve_data_files(job), rank=0, world=1, device=ctx.torch_device,
                                     wrap=wrap)
    return state, task, plan.phases[0]


def _batches(ctx: Context, job, state, task, phase):
    """The micro-batches from where `state` stands (a restored one included)."""
    return task.micro_batches(phase, rank=0, world=1, seed=job.train.seed, device=ctx.torch_device,
                              epoch=state.position.epoch, consumed=state.position.micro_batch)


def _train(ctx: Context, job, wrap=None):
    """`_build`, and the micro-batches from the start."""
    state, task, phase = _build(ctx, job, wrap)
    return state, task, phase, _batches(ctx, job, state, task, phase)


def _steps(state, phase, batches, n: int) -> list[float]:
    """`n` product steps, read once at the end (as training reads them)."""
    losses = [state.step(phase, batches) for _ in range(n)]
    state.settle()
    values = [float(x) for x in losses]
    if not all(math.isfinite(v) for v in values):
        raise CheckFailed(f"non-finite loss in {values}")
    return values


def _learned(losses: list[float]) -> str:
    head, tail = losses[:5], losses[-5:]
    if sum(tail) >= sum(head):
        raise CheckFailed(f"the loss did not fall: first steps {head}, last {tail}")
    return f"loss {sum(head) / len(head):.3f} -> {sum(tail) / len(tail):.3f}"


def _speed(state) -> str:
    w = state.window
    return f"{w.throughput():.0f} samples/s, {1e3 * w.per_step('total'):.1f} ms/step"


def _evaluate(state, task) -> dict:
    state.module.eval()
    metrics = task.evaluator.run(state.module, state.device, rank=0, world=1, autocast=state.autocast)
    state.module.train()
    return metrics


def squad_bf16_step(ctx: Context) -> str:
    job = ctx.job("squad", precision="bf16")
    state, task, phase, batches = _train(ctx, job)
    losses = _steps(state, phase, batches, job.train.steps)
    f1 = _evaluate(state, task)["f1"]
    if not math.isfinite(f1):
        raise CheckFailed(f"dev F1 {f1}")
    return f"{ctx.model}, {len(losses)} steps: {_learned(losses)}, {_speed(state)}, dev F1 {f1:.1f}"


def mlm_fp16_step(ctx: Context) -> str:
    if ctx.device != "cuda":
        raise CheckFailed("fp16 needs CUDA (--device cuda)")
    job = ctx.job("mlm", precision="fp16")
    state, task, phase, batches = _train(ctx, job)
    losses = _steps(state, phase, batches, job.train.steps)
    acc = _evaluate(state, task)["mlm_acc"]
    if not math.isfinite(acc):
        raise CheckFailed(f"mlm_acc {acc}")
    return (f"{ctx.model}, {len(losses)} steps: {_learned(losses)}, {_speed(state)}, mlm_acc {acc:.3f}, "
            f"loss scale {state.scaler.get_scale():g}")


def no_host_sync(ctx: Context) -> str:
    """Three steps after three warm-up steps under CUDA's sync debug mode, per configuration: bf16
    must not sync at all; fp16's GradScaler reads its overflow flag once a step (documented)."""
    cases = [("squad", "bf16", "lamb"), ("squad", "bf16", "radam"), ("squad", "bf16", "adamw"),
             ("mlm", "bf16", "lans"), ("mlm", "bf16", "lars"), ("mlm", "fp16", "lamb")]
    seen = []
    for task, precision, optimizer in cases:
        if precision == "fp16" and ctx.device != "cuda":
            continue
        job = ctx.job(task, precision=precision, optimizer=optimizer, steps=8, name=f"{task}_{precision}_{optimizer}")
        state, _, phase, batches = _train(ctx, job)
        _steps(state, phase, batches, 3)  # state allocated, kernels compiled
        ready = iter([next(batches) for _ in range(3 * phase.grad_accum)])  # copies are not the step's
        with host_syncs(ctx.torch_device) as found:
            for _ in range(3):
                state.step(phase, ready)
        allowed = 3 if precision == "fp16" else 0
        if len(found) > allowed:
            raise CheckFailed(f"{task} {precision} {optimizer}: {len(found)} host syncs in 3 steps "
                              f"(allowed {allowed}): {sorted(set(found))}")
        state.settle()
        seen.append(f"{task}/{precision}/{optimizer} {len(found)}")
    return f"host syncs in 3 steps of {ctx.model}: " + ", ".join(seen)


def _child(ctx: Context, mode: str) -> None:
    """A training process of the checkpoint check. `first`: train to RESUME_AT, write the
    checkpoint, record the next AFTER losses, then wait to be killed. `resume`: read it, check
    where it stands, record the same AFTER losses."""
    from scaling_study.train import checkpoint

    job = ctx.job("squad", precision="bf16" if ctx.device == "cuda" else "fp32", steps=20, name="resume")
    folder, losses = ctx.out / "checkpoint", ctx.out / f"{mode}_losses.json"
    state, task, phase = _build(ctx, job)
    if mode == "resume":
        checkpoint.read(folder, state)
        counters = {g.get("step") for g in state.optimizer.param_groups}
        if state.position.step != RESUME_AT or counters != {RESUME_AT}:
            raise CheckFailed(f"resumed at step {state.position.step}, optimizer counters {counters}")
    batches = _batches(ctx, job, state, task, phase)
    if mode == "first":
        _steps(state, phase, batches, RESUME_AT)
        tmp = folder.with_name("checkpoint.tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        checkpoint.write(tmp, state)
        tmp.rename(folder)
    recorded = losses.with_suffix(".tmp")
    recorded.write_text(json.dumps(_steps(state, phase, batches, AFTER)))
    recorded.rename(losses)  # all at once: the parent kills this process when it appears
    if mode == "first":
        time.sleep(300)  # until killed


def _spawn(ctx: Context, mode: str) -> subprocess.Popen:
    with open(ctx.out / f"{mode}.log", "w") as log:  # the child has its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", __name__, mode, "--out", str(ctx.out), "--device", ctx.device,
                                 "--model", ctx.model, "--examples", str(ctx.examples)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _kill(child: subprocess.Popen) -> None:
    """SIGKILL `child` and its process group (its data-loader processes), and reap it."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)


def checkpoint_resume(ctx: Context) -> str:
    for folder in ("checkpoint", "checkpoint.tmp"):  # a run before this one's
        shutil.rmtree(ctx.out / folder, ignore_errors=True)
    for mode in ("first", "resume"):
        (ctx.out / f"{mode}_losses.json").unlink(missing_ok=True)
    first = _spawn(ctx, "first")
    recorded, deadline = ctx.out / "first_losses.json", time.monotonic() + 240
    children = [first]
    try:
        while not recorded.is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        _kill(first)  # SIGKILL, as a lost machine: no clean-up of any kind
        if not recorded.is_file():
            raise CheckFailed(f"the first process wrote no checkpoint and losses (see {ctx.out / 'first.log'})")
        children.append(_spawn(ctx, "resume"))
        if children[-1].wait(timeout=240) != 0:
            raise CheckFailed(f"the resumed process failed (see {ctx.out / 'resume.log'})")
    finally:
        for child in children:
            _kill(child)
    want = json.loads(recorded.read_text())
    got = json.loads((ctx.out / "resume_losses.json").read_text())
    diff = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(got, want))
    if diff > 2e-2:
        raise CheckFailed(f"after the resume the losses were {got}, the killed run's {want}")
    return (f"killed (SIGKILL) after checkpoint.write at step {RESUME_AT}; resumed at step {RESUME_AT} with "
            f"the optimizer's step counters; the next {AFTER} losses match, max relative difference {diff:.1e}")


def optimizers_cuda_vs_cpu(ctx: Context) -> str:
    """LAMB, LANS, LARS (fused Triton and foreach) on CUDA float32 against the CPU's float64
    foreach, over odd shapes, two groups and an unaligned tensor, 4 steps."""
    import torch

    from scaling_study.optim import Lamb, Lans, Lars, _triton

    if not _triton.available():
        raise CheckFailed("the Triton kernels do not launch here (see the warning above)")
    shapes = [(), (1,), (140_001,), (40, 30), (16, 8), (33,), (768,), (3,)]
    worst = {}
    for cls in (Lamb, Lans, Lars):
        want = _optimizer_run(cls, shapes, "cpu", "foreach", torch.float64)
        for impl in ("fused", "foreach"):
            got = _optimizer_run(cls, shapes, ctx.device, impl, torch.float32)
            err = max(((g.double() - w).norm() / max(w.norm(), 1e-12)).item() for g, w in zip(got, want))
            if err > 1e-4:
                raise CheckFailed(f"{cls.__name__}({impl}) on {ctx.device}: relative error {err:.2e} > 1e-4")
            worst[f"{cls.__name__.lower()}:{impl}"] = err
    return "relative error vs CPU float64: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items())


def _optimizer_run(cls, shapes, device: str, impl: str, dtype) -> list:
    import torch

    gen = torch.Generator().manual_seed(0)
    ws = [(torch.randn(s, generator=gen) * 0.5).to(device=device, dtype=dtype) for s in shapes]
    buffer = torch.empty(ws[-1].numel() + 1, dtype=dtype, device=device)
    ws[-1] = buffer[1:].copy_(ws[-1])  # not 16-byte aligned: a launch of its own
    params = [torch.nn.Parameter(w) for w in ws]
    opt = cls([{"params": params[:4], "weight_decay": 0.01}, {"params": params[4:], "weight_decay": 0.0}],
              lr=0.02, impl=impl)
    for step in range(4):
        g = torch.Generator().manual_seed(100 + step)
        for p in params:
            p.grad = (torch.randn(p.shape, generator=g) * 1e-2).to(device=device, dtype=dtype)
        opt.step()
    return [p.detach().cpu() for p in params]


def bench_optim(ctx: Context) -> str:
    from scaling_study.bench import optim as bench

    limits = {"lamb": 1.5, "lans": 2.0}
    rows = bench.measure(["adamw:fused", "lamb", "lans", "lars", "lamb:foreach"], device=ctx.device,
                         steps=20, warmup=3, rounds=3)
    bench.print_table(rows)
    by_name = {r["optimizer"]: r for r in rows}
    ratios = {name: float(by_name[name]["x_adamw:fused"].split()[0]) for name in limits}
    cols = ", ".join(f"{n} {by_name[n]['median_ms']} ms ({by_name[n]['launches']} launches, host "
                     f"{by_name[n]['host_ms']} ms)" for n in ("adamw:fused", "lamb", "lans"))
    over = [f"{n} {r:.2f}x > {limits[n]}x" for n, r in ratios.items() if r > limits[n]]
    if over:
        raise CheckFailed(f"{'; '.join(over)} AdamW(fused); {cols}")
    return f"BERT-base step vs AdamW(fused): lamb {ratios['lamb']:.2f}x, lans {ratios['lans']:.2f}x; {cols}"


def ddp_nccl_noise_hook(ctx: Context) -> str:
    """One rank of an NCCL process group, DDP with the noise-scale comm hook, 2 micro-batches a
    step: the hook's norms come through NCCL (local = reduced with one rank) and are read with
    the loss."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from scaling_study.answers.noise_hooks import NormState
    from scaling_study.train.setup import DDP_KWARGS

    device = ctx.torch_device
    torch.cuda.set_device(device)
    (ctx.out / "store").unlink(missing_ok=True)  # a store left by an earlier run would be read
    store = dist.FileStore(str(ctx.out / "store"), 1)
    dist.init_process_group("nccl", store=store, rank=0, world_size=1, device_id=device, timeout=timedelta(seconds=60))
    try:
        job = ctx.job("squad", precision="bf16", grad_accum=2, steps=4, batch=16, name="ddp")
        def ddp(model):  # as Ray Train's prepare_model wraps it
            return torch.nn.parallel.DistributedDataParallel(model.to(device), device_ids=[device], **DDP_KWARGS)

        state, _, phase, batches = _train(ctx, job, wrap=ddp)
        if not isinstance(state.noise.collector, NormState):
            raise CheckFailed(f"the noise scale is collected by {state.noise.collector!r}, not DDP's comm hook")
        for _ in range(2):
            state.step(phase, batches)
        local, reduced = state.noise.pending(device).view(-1, 2).T.tolist()
        if not all(math.isfinite(x) and x > 0 for x in local) or local != reduced:
            raise CheckFailed(f"hook norms local {local}, reduced {reduced}")
        loss = state.settle()
    finally:
        dist.destroy_process_group()
    version = torch.cuda.nccl.version()
    version = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    return f"NCCL {version}: 2 steps, loss {loss:.3f}, |g|^2 local = reduced = {local}"


def bench_train(ctx: Context) -> str:
    from scaling_study.bench import train as bench
    from scaling_study.bench.gpu_check_context import check_tokenizer

    data = ctx.out.parent / "data"
    lines = []
    for model, batch in (("base", 32), ("large", 16)):
        line = bench.no_ray_measure(model=model, batch=batch, device=ctx.device, precision="bf16", steps=20,
                                    warmup=5, tokenizer=check_tokenizer(data), data_dir=data)
        lines.append(f"bench train --no-ray --model {model} --precision bf16 --batch {batch} --seq-len 128: {line}")
        print(lines[-1], flush=True)
    return "; ".join(lines)


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("first", "resume"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="base")
    p.add_argument("--examples", type=int, default=2000)
    a = p.parse_args()
    _child(Context(out=a.out, device=a.device, model=a.model, examples=a.examples), a.mode)
