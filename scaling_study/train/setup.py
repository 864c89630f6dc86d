"""Builds what one worker trains with: model (DDP), optimizer, schedule, precision, data shard."""
from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import ray.train.torch

from scaling_study.config import Job, Phase
from scaling_study.contract import METRICS
from scaling_study.train.tasks import DataFiles, TaskData, build_task_data


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Setup:
    job: Job
    device: torch.device
    model: torch.nn.Module
    module: torch.nn.Module
    """The model without its DDP wrapper (for evaluation and checkpoints)."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: Any
    task: TaskData
    phases: list[Phase]
    phase_start: list[int]
    world: int
    rank: int
    restored: bool = False
    log_every: int = 10
    eval_batch_size: int = 32
    autocast: Callable = contextlib.nullcontext
    params: list = field(default_factory=list)
    sparse_params: list = field(default_factory=list)
    """Parameters whose gradient arrives sparse (the word embedding under sparse all-reduce)."""

    @property
    def ddp(self) -> bool:
        return hasattr(self.model, "no_sync")

    @property
    def total_steps(self) -> int:
        return self.phase_start[-1] + self.phases[-1].steps

    def synchronize(self) -> None:
        # Host timings need the device's queue drained; CPU work is already synchronous.
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def optimizer_step(self) -> None:
        """Clip the global gradient norm (NVIDIA's LAMB recipe), step, advance the schedule."""
        max_norm = self.job.train.max_grad_norm
        for p in self.sparse_params:  # all-reduced as sparse rows; the optimizers want them dense
            if p.grad is not None and p.grad.is_sparse:
                p.grad = p.grad.to_dense()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, max_norm, foreach=True)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def eval_due(self, step: int, samples: int, phase: Phase) -> bool:
        ev = self.job.eval
        if ev.every_steps is not None:
            return step % ev.every_steps == 0
        return samples // ev.every_samples != (samples - phase.global_batch) // ev.every_samples

    def target_reached(self, metrics: dict) -> bool:
        t = self.job.eval.target
        value = metrics.get(t.metric)
        if value is None or not math.isfinite(value):
            return False
        return METRICS[t.metric].reached(value, t.value)

    def shard_batches(self, phase: Phase, pos) -> Iterator[dict]:
        """This rank's micro-batches for `phase`, from where `pos` says, epoch after epoch.

        A `DistributedSampler` (seeded, reshuffled each epoch) shards the data; resuming skips
        the micro-batches already consumed instead of replaying them.
        """
        dataset = self.task.train_sets[phase.seq_len]
        sampler = torch.utils.data.DistributedSampler(
            dataset, num_replicas=self.world, rank=self.rank, shuffle=True,
            seed=self.job.train.seed + 1000 * phase.index, drop_last=True)
        per_epoch = len(sampler) // phase.per_worker_batch
        if per_epoch == 0:
            raise ValueError(f"phase {phase.index + 1}: {len(dataset)} training examples are fewer than "
                             f"per_worker_batch x workers = {phase.per_worker_batch} x {self.world}")
        while True:
            sampler.set_epoch(pos.epoch)
            indices = list(sampler)
            for b in range(pos.micro_batch, per_epoch):
                chunk = indices[b * phase.per_worker_batch:(b + 1) * phase.per_worker_batch]
                batch = self._collate([dataset[i] for i in chunk], phase)
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                batch["_position"] = b + 1
                yield batch
            pos.epoch += 1
            pos.micro_batch = 0

    def _collate(self, items: list, phase: Phase) -> dict:
        if self.task.collate is not None:
            return dict(self.task.collate[phase.index](items))
        return torch.utils.data.default_collate(items)


def resolve_phase_steps(job: Job, task: TaskData) -> list[Phase]:
    """Phases with `steps` filled in: `train.epochs` becomes steps once the data size is known."""
    phases = job.phases()
    if job.train.epochs is None:
        return phases
    return [replace(p, steps=max(1, math.ceil(job.train.epochs * len(task.train_sets[p.seq_len]) / p.global_batch)))
            for p in phases]


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


def build_setup(job: Job, config: dict, rank: int, world: int) -> Setup:
    from scaling_study.models import build_model, load_tokenizer
    from scaling_study.optim import bert_param_groups, build_optimizer

    device = ray.train.torch.get_device()
    tokenizer = load_tokenizer(job.model.name)
    files = DataFiles(**{k: [Path(p) for p in v] for k, v in config["files"].items()})
    task = build_task_data(job, files, tokenizer)
    phases = resolve_phase_steps(job, task)
    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
    model = build_model(job.model.name, job.task, tokenizer, seed=job.train.seed)
    if job.model.dropout is not None:
        set_dropout(model, job.model.dropout)
    seed_everything(job.train.seed + rank)  # dropout and masking differ per rank, as they should
    sparse = _use_sparse_embedding_grads(job, model, device, world)
    # Gradients as views into DDP's all-reduce buckets: no copy into and out of the buckets
    # each step (measured: a third of DDP's CPU overhead on the tiny model, gloo, 2 workers).
    model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"gradient_as_bucket_view": True})
    module = getattr(model, "module", model)
    o = job.optimizer
    groups = bert_param_groups(module, o.weight_decay, no_decay=tuple(o.no_decay))
    base_lr = job.peak_lr(phases[0])
    optimizer = build_optimizer(o.name, groups, lr=base_lr, **o.args)
    starts = [sum(p.steps for p in phases[:i]) for i in range(len(phases))]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(job, phases, base_lr))
    scaler = torch.amp.GradScaler(device.type) if job.train.precision == "fp16" else None
    params = [p for p in module.parameters() if p.requires_grad]
    return Setup(job=job, device=device, model=model, module=module, optimizer=optimizer,
                 scheduler=scheduler, scaler=scaler, task=task, phases=phases, phase_start=starts,
                 world=world, rank=rank, autocast=_autocast(job, device), params=params,
                 sparse_params=sparse, log_every=config.get("log_every", 10))


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


def lr_lambda(job: Job, phases: list[Phase], base_lr: float) -> Callable[[int], float]:
    """step -> LR multiplier over all phases: each phase re-warms up to its own peak LR."""
    from scaling_study.optim import build_schedule, phased_schedule

    def scaled(fn: Callable[[int], float], scale: float) -> Callable[[int], float]:
        return lambda step: scale * fn(step)

    parts = []
    for phase in phases:
        fn = build_schedule(job.schedule.name, phase.steps, warmup=phase.warmup_arg, **job.schedule.args)
        parts.append((phase.steps, scaled(fn, job.peak_lr(phase) / base_lr)))
    return phased_schedule(parts)
