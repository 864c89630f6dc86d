"""One worker's training state and its optimizer step.

`TrainState` owns what a checkpoint restores (model, optimizer, LR schedule, loss scaler, data
position, clocks) and takes one optimizer step over a phase's micro-batches: gradient
accumulation without an all-reduce until the last micro-batch, global-norm clipping, the step,
the schedule. `checkpoint.py` writes and reads it.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist

from scaling_study.config import Phase
from scaling_study.train.tasks import MicroBatch


@dataclass
class Position:
    """Where training stands; every field survives a restart."""
    phase: int = 0
    step: int = 0
    """Optimizer steps done, counted over all phases."""
    samples: int = 0
    epoch: int = 0
    micro_batch: int = 0
    """Micro-batches this rank has consumed in the current epoch of the current phase."""
    train_time_s: float = 0.0
    wall_time_s: float = 0.0
    stopped: bool = False
    """The run stopped at its target (eval.target.stop): a restart trains no further."""

    @classmethod
    def from_dict(cls, data: dict) -> "Position":
        known = {f.name for f in fields(cls)}  # checkpoints of older versions carry more keys
        return cls(**{k: v for k, v in data.items() if k in known})


class Clock:
    """Training time (evaluation excluded) and wall time, both carried across restarts."""

    def __init__(self, train_s: float = 0.0, wall_s: float = 0.0):
        self.train = train_s
        self._wall0 = time.perf_counter() - wall_s

    def wall(self) -> float:
        return time.perf_counter() - self._wall0


class Window:
    """Sums over the steps since the last evaluation."""

    def __init__(self):
        self.loss = self.steps = self.samples = 0
        self.times = {"compute": 0.0, "allreduce": 0.0, "optimizer": 0.0, "total": 0.0}

    def add(self, loss: float, samples: int, times: dict) -> None:
        self.loss += loss
        self.steps += 1
        self.samples += samples
        for k in self.times:
            self.times[k] += times[k]

    def mean_loss(self) -> float:
        return self.loss / self.steps if self.steps else float("nan")

    def throughput(self) -> float:
        return self.samples / self.times["total"] if self.times["total"] > 0 else float("nan")

    def per_step(self, key: str) -> float:
        return self.times[key] / self.steps if self.steps else float("nan")


class TrainState:
    """Model (DDP-wrapped where there are several workers), optimizer, schedule, scaler, the
    data position and the clocks of one worker."""

    def __init__(self, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, scaler: Any,
                 device: torch.device, rank: int, world: int, autocast: Callable = contextlib.nullcontext,
                 max_grad_norm: float | None = None, sparse_params: list | None = None):
        self.model = model
        self.module = getattr(model, "module", model)
        """The model without its DDP wrapper (for evaluation and checkpoints)."""
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.device, self.rank, self.world = device, rank, world
        self.autocast = autocast
        self.max_grad_norm = max_grad_norm
        self.sparse_params = sparse_params or []
        """Parameters whose gradient arrives sparse (the word embedding under sparse all-reduce)."""
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
        self.position = Position()
        self.clock = Clock()
        self.window = Window()
        self.restored = False

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, phase: Phase, batches: Iterator[MicroBatch]) -> float:
        """One optimizer step over `phase.grad_accum` micro-batches; returns the mean loss over
        all workers (NaN or inf on every rank when any rank's loss is)."""
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)
        micro_times = []
        for i in range(phase.grad_accum):
            t_micro = time.perf_counter()
            batch = next(batches)
            self.position.epoch, self.position.micro_batch = batch.epoch, batch.consumed
            # Accumulate locally; DDP all-reduces only in the last micro-batch's backward.
            last = i == phase.grad_accum - 1
            with self.model.no_sync() if self.ddp and not last else contextlib.nullcontext():
                with self.autocast():
                    loss = self.model(**batch.tensors).loss
                loss_scaled = loss / phase.grad_accum
                (self.scaler.scale(loss_scaled) if self.scaler else loss_scaled).backward()
            loss_sum += loss.detach().float()
            self._synchronize()
            micro_times.append(time.perf_counter() - t_micro)
        t1 = time.perf_counter()
        self._optimizer_step()
        self._synchronize()
        t2 = time.perf_counter()
        loss = self._global_mean(loss_sum / phase.grad_accum)
        times = _split_times(micro_times, t1 - t0, t2 - t1, self.world, time.perf_counter() - t0)
        self.position.step += 1
        self.position.samples += phase.global_batch
        self.clock.train += times["total"]
        self.window.add(loss, phase.global_batch, times)
        return loss

    def _optimizer_step(self) -> None:
        """Clip the global gradient norm (NVIDIA's LAMB recipe), step, advance the schedule."""
        for p in self.sparse_params:  # all-reduced as sparse rows; the optimizers want them dense
            if p.grad is not None and p.grad.is_sparse:
                p.grad = p.grad.to_dense()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm, foreach=True)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        # Under DDP the gradients are views into its all-reduce buckets: zero them in place, as
        # set_to_none would drop the views and make DDP copy every gradient into its buckets again.
        self.optimizer.zero_grad(set_to_none=not self.ddp)
        for p in self.sparse_params:  # DDP wants a fresh sparse gradient, not a dense zero one
            p.grad = None

    def _synchronize(self) -> None:
        # Host timings need the device's queue drained; CPU work is already synchronous.
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _global_mean(self, loss: torch.Tensor) -> float:
        if self.world > 1:
            loss = loss.clone()
            dist.all_reduce(loss)  # also a NaN flag: one rank's NaN makes every rank stop together
            loss /= self.world
        return loss.item()


def _split_times(micro_times: list[float], fb_time: float, opt_time: float, world: int, total: float) -> dict:
    """Compute / exposed all-reduce / optimizer seconds of one step.

    The all-reduce overlaps the last micro-batch's backward, so it is measured as the extra time
    of that micro-batch over the no-sync ones: only when there are some (grad_accum > 1).
    """
    if world == 1:
        allreduce = 0.0
    elif len(micro_times) > 1:
        allreduce = max(0.0, micro_times[-1] - sum(micro_times[:-1]) / (len(micro_times) - 1))
    else:
        allreduce = float("nan")
    compute = fb_time - (allreduce if math.isfinite(allreduce) else 0.0)
    return {"compute": compute, "allreduce": allreduce, "optimizer": opt_time, "total": total}
