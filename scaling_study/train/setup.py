"""Builds what one worker trains with from its `WorkerConfig`: the data, the plan (phases and the
steps that evaluate), and the `TrainState` (model under DDP, optimizer, LR schedule, scaler).
`build_worker` builds the same from a job outside Ray Train (the benchmarks, calibration)."""
from __future__ import annotations

import contextlib
import inspect
import math
import random
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from scaling_study.config import EvalConfig, Job, Phase
from scaling_study.train.gradient_noise import GradientNoise
from scaling_study.train.state import TrainState
from scaling_study.train.tasks import DataFiles, TaskData, build_task_data


def _no_buffer_sync_at_forward() -> dict:
    # torch 2.13 renamed DDP's broadcast_buffers to forward_sync_buffers (which still syncs them
    # once when DDP wraps the model); earlier releases know only the old name.
    params = inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


DDP_KWARGS = {"gradient_as_bucket_view": True, **_no_buffer_sync_at_forward()}
"""How the model goes under DDP. Gradients as views into DDP's all-reduce buckets: no copy into
and out of the buckets each step (measured: a third of DDP's CPU overhead on the tiny model, gloo,
2 workers). No broadcast of rank 0's buffers before every forward: BERT's only buffers
(`position_ids`, `token_type_ids`) are constants, the same on every rank, that training never
writes."""


@dataclass(frozen=True)
class Plan:
    """The run's phases, with their steps resolved, and the steps after which it evaluates."""
    phases: tuple[Phase, ...]
    evals: frozenset[int]

    def end(self, phase: int) -> int:
        """The step at which phase `phase` (from 0) ends, counted over all phases."""
        return sum(p.steps for p in self.phases[:phase + 1])

    @property
    def total_steps(self) -> int:
        return self.end(len(self.phases) - 1)

    @property
    def last_eval(self) -> int:
        """The step of the run's last evaluation (0: none): its report is the run's last."""
        return max(self.evals, default=0)


def evaluation_steps(ev: EvalConfig, phases: list[Phase]) -> frozenset[int]:
    """The steps after which a run evaluates: every `every_steps` steps, or each time the samples
    seen cross a multiple of `every_samples`; and, when `at_end`, the last step even off that
    schedule."""
    evals, step, samples = set(), 0, 0
    for phase in phases:
        for _ in range(phase.steps):
            step, before, samples = step + 1, samples, samples + phase.global_batch
            if ev.every_steps is not None:
                due = step % ev.every_steps == 0
            else:
                due = samples // ev.every_samples != before // ev.every_samples
            if due:
                evals.add(step)
    if ev.at_end and step:
        evals.add(step)
    return frozenset(evals)


def make_plan(job: Job, task: TaskData, world: int | None = None) -> Plan:
    """Phases on `world` workers (default the job's; an elastic run's accumulation follows its
    world, its global batch does not) with `steps` filled in (`train.epochs` becomes steps once
    the data size is known)."""
    phases = job.phases(world)
    if job.train.epochs is not None:
        phases = [replace(p, steps=max(1, math.ceil(job.train.epochs * len(task.train_sets[p.seq_len]) / p.global_batch)))
                  for p in phases]
    return Plan(tuple(phases), evaluation_steps(job.eval, phases))


def build(cfg, rank: int, world: int) -> tuple[TrainState, TaskData, Plan]:
    """Everything Ray Train worker `rank` of `world` trains with, before any checkpoint is restored,
    on the device `devices.worker_device` gives it (CUDA exactly when `scaling.use_gpu`)."""
    import ray.train.torch

    from scaling_study.train.devices import worker_device

    device = worker_device(cfg.job, local=cfg.local)
    apply_nccl_env(cfg.job, device)

    def prepare(model: torch.nn.Module) -> torch.nn.Module:
        return ray.train.torch.prepare_model(model, move_to_device=device, parallel_strategy_kwargs=DDP_KWARGS)

    return build_worker(cfg.job, cfg.files, rank=rank, world=world, device=device, wrap=prepare)


def build_worker(job: Job, files: DataFiles, *, rank: int, world: int, device: torch.device,
                 wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None, noise_scale: bool = True
                 ) -> tuple[TrainState, TaskData, Plan]:
    """What rank `rank` of `world` trains with, on `device`: `build` inside Ray Train, and the
    benchmarks and calibration outside it, so that all of them take the very same step.

    `wrap` moves the model to `device` and, with `world` > 1, puts it under DDP (default
    `wrap_ddp`: torch's DDP over the process group the caller initialised). `noise_scale`: measure
    the gradient noise scale (`gradient_noise`; off only to show what it costs).
    """
    from scaling_study.models import build_model, load_tokenizer
    from scaling_study.optim import bert_param_groups, build_optimizer
    from scaling_study.train.devices import check_precision

    check_precision(job, device)  # before anything is built: bf16 would fail only at the first step
    torch.set_num_threads(max(1, int(job.scaling.cpus_per_worker)))
    set_matmul_precision(job, device)
    tokenizer = load_tokenizer(job.model.tokenizer or job.model.name)
    task = build_task_data(job, files, tokenizer)
    plan = make_plan(job, task, world)
    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
    model = build_model(job.model.name, job.task, tokenizer, seed=job.train.seed)
    if job.model.dropout is not None:
        set_dropout(model, job.model.dropout)
    seed_everything(job.train.seed + rank)  # dropout and masking differ per rank, as they should
    sparse = _use_sparse_embedding_grads(job, model, device, world)
    model = wrap(model) if wrap is not None else wrap_ddp(model, device, world)
    module = getattr(model, "module", model)
    params = [p for p in module.parameters() if p.requires_grad]
    noise = GradientNoise.attach(model, params, world=world, phases=plan.phases) if noise_scale else None
    o = job.optimizer
    base_lr = job.peak_lr(plan.phases[0])
    optimizer = build_optimizer(o.name, bert_param_groups(module, o.weight_decay, no_decay=tuple(o.no_decay)),
                                lr=base_lr, **o.args)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(job, plan.phases, base_lr))
    scaler = torch.amp.GradScaler(device.type) if job.train.precision == "fp16" else None
    state = TrainState(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, device=device,
                       rank=rank, world=world, autocast=_autocast(job, device),
                       max_grad_norm=job.train.max_grad_norm, sparse_params=sparse, noise=noise)
    return state, task, plan


def set_matmul_precision(job: Job, device: torch.device) -> None:
    """fp32 matrix products in TF32 on a GPU where `train.tf32` (torch's 'high'), else strict
    fp32 ('highest'); a CPU keeps torch's setting."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high" if job.train.tf32 else "highest")


def apply_nccl_env(job: Job, device: torch.device) -> None:
    """Put `scaling.nccl_env` into this GPU worker's environment. NCCL reads its variables when
    it creates its first communicator, which torch does lazily at the first collective (Ray Train
    initialises the process group without a device, so before this worker's DDP wrap): set here,
    they apply to every collective of the run."""
    import os

    if device.type == "cuda":
        os.environ.update(job.scaling.nccl_env)


def wrap_ddp(model: torch.nn.Module, device: torch.device, world: int) -> torch.nn.Module:
    """`model` on `device`, under torch's DDP when `world` > 1, as Ray Train's `prepare_model`
    wraps it (one device per process, `DDP_KWARGS`)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    model = model.to(device)
    if world == 1:
        return model
    ids = [device] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=device if ids else None,
                                                     **DDP_KWARGS)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Every dropout of the model (BERT's attention reads its module's `p` too) to `p`."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        setattr(model.config, key, p)


def _autocast(job: Job, device: torch.device) -> Callable:
    if job.train.precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if job.train.precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _use_sparse_embedding_grads(job: Job, model: torch.nn.Module, device: torch.device, world: int) -> list:
    """Switch the word embedding to sparse gradients where that shrinks the all-reduce; returns
    the parameters so switched (to densify before the optimizer).

    A batch of B x L tokens touches at most B x L of the vocabulary's rows, yet DDP would send
    the whole vocab x hidden gradient: 89 % of a tiny BERT's and half of MiniLM's bytes. gloo
    all-reduces sparse tensors (NCCL does not, so GPUs keep the dense path), and an input
    embedding tied to an output layer (MLM) gets a dense gradient from the decoder anyway.
    """
    if not (job.scaling.sparse_embedding_allreduce and world > 1 and device.type == "cpu"):
        return []
    embedding = model.get_input_embeddings()
    output = model.get_output_embeddings()
    if not isinstance(embedding, torch.nn.Embedding) or (output is not None and output.weight is embedding.weight):
        return []
    embedding.sparse = True
    return [embedding.weight]


def lr_lambda(job: Job, phases: tuple[Phase, ...], base_lr: float) -> Callable[[int], float]:
    """step -> LR multiplier over all phases: each phase re-warms up to its own peak LR."""
    from scaling_study.optim import build_schedule, phased_schedule

    def scaled(fn: Callable[[int], float], scale: float) -> Callable[[int], float]:
        return lambda step: scale * fn(step)

    parts = []
    for phase in phases:
        fn = build_schedule(job.schedule.name, phase.steps, warmup=phase.warmup_arg, **job.schedule.args)
        parts.append((phase.steps, scaled(fn, job.peak_lr(phase) / base_lr)))
    return phased_schedule(parts)
