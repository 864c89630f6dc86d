"""One worker's training state and its optimizer step.

`TrainState` owns what a checkpoint restores (model, optimizer, LR schedule, loss scaler, data
position, clocks) and takes one optimizer step over a phase's micro-batches: gradient
accumulation without an all-reduce until the last micro-batch, global-norm clipping, the step,
the schedule. `checkpoint.py` writes and reads it.

A step never waits for the device. Its loss stays on the device and its times are marks (CUDA
events on a GPU); `settle` reads the steps taken since its last call with one synchronisation,
all-reducing their loss, which is also how divergence is noticed, and their gradient norms for
the noise scale (`gradient_noise`) in the same all-reduce. The loop settles every few steps and
before each evaluation, so the host of a GPU worker runs ahead of the GPU in between.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Iterator, NamedTuple

import torch
import torch.distributed as dist

from scaling_study.config import Phase
from scaling_study.train.gradient_noise import GradientNoise
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
    world: int = 0
    """The worker count `micro_batch` was counted on (0: not recorded, older checkpoints)."""
    train_time_s: float = 0.0
    wall_time_s: float = 0.0
    stopped: bool = False
    """The run stopped at its target (eval.target.stop): a restart trains no further."""

    @classmethod
    def from_dict(cls, data: dict) -> "Position":
        known = {f.name for f in fields(cls)}  # checkpoints of older versions carry more keys
        return cls(**{k: v for k, v in data.items() if k in known})

    def on_world(self, world: int) -> Position:
        """This position for a worker group of `world` ranks (an elastic run that shrank or grew).

        A `DistributedSampler` deals each epoch's permutation to the ranks in turn, so when each
        of w ranks has consumed m micro-batches of b samples, together they have consumed its
        first m·b·w places whatever w is: on `world` ranks that is m·w/world micro-batches each.
        Within an epoch every step then takes the very same samples as on the old world; where
        m·w/world is not whole (an epoch boundary inside a step), the rounding down re-reads fewer
        than b·world samples of the epoch.
        """
        if not self.world or self.world == world:
            return dataclasses.replace(self, world=world)
        return dataclasses.replace(self, micro_batch=self.micro_batch * self.world // world, world=world)


class Clock:
    """Training time (evaluation excluded) and wall time, both carried across restarts."""

    def __init__(self, train_s: float = 0.0, wall_s: float = 0.0):
        self.train = train_s
        self._wall0 = time.perf_counter() - wall_s

    def wall(self) -> float:
        return time.perf_counter() - self._wall0


class Window:
    """Sums over the settled steps since the last evaluation (see `TrainState.settle`)."""

    def __init__(self):
        self.loss = 0.0
        """The workers' mean loss of each step, summed over the steps."""
        self.steps = self.samples = 0
        self.times = {"compute": 0.0, "allreduce": 0.0, "optimizer": 0.0, "total": 0.0}

    def add(self, samples: int, times: dict) -> None:
        """One step's samples and seconds (its loss arrives summed with others': `loss`)."""
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


class _Taken(NamedTuple):
    """A step taken but not yet read: its time marks (see `TrainState._mark`) and samples."""
    marks: list
    samples: int


class TrainState:
    """Model (DDP-wrapped where there are several workers), optimizer, schedule, scaler, the
    data position and the clocks of one worker."""

    def __init__(self, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, scaler: Any,
                 device: torch.device, rank: int, world: int, autocast: Callable = contextlib.nullcontext,
                 max_grad_norm: float | None = None, sparse_params: list | None = None,
                 noise: GradientNoise | None = None):
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
        self.noise = noise if noise is not None else GradientNoise(world=world)
        """The gradient noise scale's collector and estimate (none collected by default)."""
        self.position = Position()
        self.clock = Clock()
        self.window = Window()
        self.restored = False
        self._taken: list[_Taken] = []
        self._unsettled_loss: torch.Tensor | None = None

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, phase: Phase, batches: Iterator[MicroBatch]) -> torch.Tensor:
        """One optimizer step over `phase.grad_accum` micro-batches; returns this worker's mean
        loss of the step as a 0-dim tensor on its device.

        Nothing here waits for the device: the step's loss and time marks are kept until
        `settle` reads them, so a GPU worker's host runs ahead and the GPU never idles on it.
        """
        marks = [self._mark()]
        loss_sum = torch.zeros((), device=self.device)
        self.noise.begin(phase)
        for i in range(phase.grad_accum):
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
            marks.append(self._mark())
        self.noise.take(phase, self.device, self.scaler)  # the raw gradients, before clipping
        self._optimizer_step()
        marks.append(self._mark())
        loss = loss_sum / phase.grad_accum
        # A non-finite loss makes the sum non-finite for good (NaN stays NaN, inf stays inf or
        # turns NaN), so the sum is also the divergence flag.
        self._unsettled_loss = loss if self._unsettled_loss is None else self._unsettled_loss + loss
        self._taken.append(_Taken(marks, phase.global_batch))
        self.position.step += 1
        self.position.samples += phase.global_batch
        return loss

    @property
    def unsettled(self) -> int:
        """Steps taken since the last `settle`."""
        return len(self._taken)

    def settle(self) -> float:
        """Read the steps taken since the last call into the window, the clocks and the noise
        scale; return their loss: the mean over those steps and all workers, NaN or inf on every
        rank when any rank's loss was not finite.

        One host synchronisation, and with several workers one all-reduce (of the loss and the
        steps' gradient norms together): a collective, so every rank calls it after the same steps.
        """
        if not self._taken:
            return self.window.mean_loss()
        loss = self._unsettled_loss.detach().reshape(1).to(torch.float64)
        total = torch.cat([loss, self.noise.pending(self.device)])
        if self.world > 1:
            dist.all_reduce(total)
        # Waits for the device: every mark below is reached.
        loss_sum, *norms = (value / self.world for value in total.tolist())
        self.noise.fold(norms)
        for taken in self._taken:
            times = self._times(taken.marks)
            self.window.add(taken.samples, times)
            self.clock.train += times["total"]
        self.window.loss += loss_sum
        steps = len(self._taken)
        self._taken, self._unsettled_loss = [], None
        return loss_sum / steps

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

    def _mark(self):
        """A point in this worker's time: on a GPU a CUDA event on its stream (read at `settle`:
        timing without waiting for the device), on the CPU the host clock (the work is done)."""
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            return event
        return time.perf_counter()

    def _seconds(self, start, end) -> float:
        return start.elapsed_time(end) / 1e3 if self.device.type == "cuda" else end - start

    def _times(self, marks: list) -> dict:
        """A step's seconds (see `_split_times`) from its marks: its start, the end of each
        micro-batch, the end of its optimizer step."""
        s = self._seconds
        micro = [s(a, b) for a, b in zip(marks[:-2], marks[1:-1])]
        return _split_times(micro, s(marks[0], marks[-2]), s(marks[-2], marks[-1]), self.world, s(marks[0], marks[-1]))


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
