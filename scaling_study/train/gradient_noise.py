"""The gradient noise scale of a run, measured as it trains, with no extra pass and no extra wait.

References: McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", appendix A.1
(the estimator: `scaling_study.answers.noise`; the norms: `scaling_study.answers.noise_hooks`).

Each step leaves its two squared gradient norms on the device (B_small: a worker's local
gradient, or one worker's micro-batch; B_big: the all-reduced, or accumulated, gradient).
`TrainState.settle` all-reduces them together with the loss, in the one all-reduce it makes every
few steps, and hands their means over workers to `fold`, which updates the moving averages on the
host step by step, in order. The averages restart at each phase (the noise scale counts samples
of one shape) and are kept in the checkpoint.
"""
from __future__ import annotations

import torch

from scaling_study.answers.noise import NoiseScale, batch_sizes
from scaling_study.answers.noise_hooks import MicroBatchNorms, NormState, noise_scale_hook
from scaling_study.config import Phase


class GradientNoise:
    """One worker's noise-scale bookkeeping: a norm collector (DDP's communication hook, the
    micro-batch gradient hooks of one worker, or none), the steps whose norms are not yet
    read, and the smoothed estimate."""

    def __init__(self, collector: NormState | MicroBatchNorms | None = None, *, world: int = 1):
        self.collector = collector
        self.world = world
        self.estimator = NoiseScale()
        self.phase: int | None = None
        """The phase (from 0) whose steps the averages hold; None before the first."""
        self._norms: list[torch.Tensor] = []
        self._steps: list[tuple[int, int, int]] = []
        """Each pending step's (phase, B_small, B_big), in the order of `_norms`."""

    @classmethod
    def attach(cls, model: torch.nn.Module, params: list, *, world: int, phases) -> "GradientNoise":
        """Hook the collector that fits into `model` (before its first backward): DDP's
        communication hook with several workers, gradient hooks on `params` for one worker that
        accumulates in some phase, none otherwise (one batch size: nothing to compare)."""
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            state = NormState()
            model.register_comm_hook(state, noise_scale_hook)
            return cls(state, world=world)
        if world == 1 and any(p.grad_accum > 1 for p in phases):
            return cls(MicroBatchNorms(params), world=world)
        return cls(world=world)

    def begin(self, phase: Phase) -> None:
        """Before a step's first backward: the micro-batch hooks work only where they compare."""
        if isinstance(self.collector, MicroBatchNorms):
            self.collector.active = phase.grad_accum > 1

    def take(self, phase: Phase, device: torch.device, scaler=None) -> None:
        """After a step's backward, before its optimizer step (which clips and zeroes the
        gradients): keep the step's norms on the device. `scaler`: the fp16 GradScaler whose
        scale the gradients carry (read as a device tensor: `GradScaler.scale` of a one)."""
        sizes = batch_sizes(phase.per_worker_batch, phase.grad_accum, self.world)
        if self.collector is None or sizes is None:
            return
        scale = scaler.scale(torch.ones((), device=device)) if scaler is not None else None
        norms = self.collector.step_norms(phase.grad_accum, scale)
        # A step without norms keeps its place (NaN, skipped by the estimator): every rank must
        # hand `settle` a tensor of the same length.
        self._norms.append(norms if norms is not None
                           else torch.full((2,), float("nan"), dtype=torch.float64, device=device))
        self._steps.append((phase.index, *sizes))

    def pending(self, device: torch.device) -> torch.Tensor:
        """The pending steps' norms, flat (small, big, small, big, ...), float64 on `device`."""
        if not self._norms:
            return torch.empty(0, dtype=torch.float64, device=device)
        return torch.cat(self._norms)

    def fold(self, means: list[float]) -> None:
        """Update the averages with the pending steps, in order, from `means`: the means over
        workers of `pending()`'s values (the reduced norm is the same on every rank)."""
        for (phase, b_small, b_big), small, big in zip(self._steps, means[0::2], means[1::2]):
            if phase != self.phase:
                self.estimator.reset()
                self.phase = phase
            self.estimator.update(small, big, b_small, b_big)
        self._norms, self._steps = [], []

    def record(self) -> dict[str, float]:
        """The records' noise columns (`NoiseScale.record`): empty (NaN) where nothing compares."""
        return self.estimator.record()

    def state_dict(self) -> dict:
        return {"phase": self.phase, **self.estimator.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.phase = state.get("phase")
        self.estimator.load_state_dict(state)
