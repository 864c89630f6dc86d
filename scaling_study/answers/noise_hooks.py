"""Squared gradient norms for the noise scale, collected on the device with no extra pass.

References: McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", appendix A.1
(the estimator is `scaling_study.answers.noise`); PyTorch DDP communication hooks
(`DistributedDataParallel.register_comm_hook`, `torch.distributed.GradBucket`).

Several workers: `noise_scale_hook` is a DDP communication hook. DDP calls it once per gradient
bucket on the step's synchronising backward (the last micro-batch under `no_sync` accumulation),
so the bucket then holds this worker's accumulated local gradient. The hook takes that bucket's
squared norm, runs DDP's own `allreduce_hook` (the default behaviour, unchanged), and takes the
reduced bucket's squared norm when the all-reduce completes. Norms stay 0-d device tensors in a
list (appending is atomic, and bucket callbacks may run on a communication thread); nothing is
read on the host here: `step_norms` gives the step's two norms as one device tensor, which
training keeps with the step's loss and all-reduces with it in the one all-reduce it already
makes every few steps (`scaling_study.train.state.TrainState.settle`), averaging the local norm
over workers.

One worker: `MicroBatchNorms` hooks each parameter's incoming gradient (before it is added into
`.grad`), so each micro-batch's gradient norm is had without a copy; the accumulated gradient's
norm is taken once at the end of the step. Norms of many tensors are taken with one
`torch._foreach_norm` launch, not one launch per parameter: the hooks hold up to `FLUSH` incoming
gradients (a bounded share of a gradient's memory) and take their norms together.

Both collectors give a step's norms the same way, `step_norms(accum, grad_scale)`: a float64
device tensor (|G_small|², |G_big|²), divided by the fp16 loss scale squared (`grad_scale`, a
device tensor, so that reading it never waits for the device), or None where the step had none.
"""
# No `from __future__ import annotations`: DDP's register_comm_hook compares the hook's
# annotations with dist.GradBucket and Future[Tensor] as objects, not strings.
import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook


def squared_norm(t: torch.Tensor) -> torch.Tensor:
    """|t|² as a 0-d tensor on t's device, in float32 or wider (bf16/fp16 gradients are summed in
    float32); a sparse gradient is coalesced first (its duplicate rows add up), as gloo's sparse
    all-reduce delivers it uncoalesced."""
    if t.is_sparse:
        t = t.coalesce().values()
    dtype = torch.promote_types(t.dtype, torch.float32)
    return torch.linalg.vector_norm(t.detach(), dtype=dtype).square()


def sum_of_squared_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Σ |t|² over `tensors` as a 0-d float64 tensor on their device: one `torch._foreach_norm`
    launch for the dense ones (in float32 or wider), `squared_norm` for any sparse one."""
    dense = [t.detach() for t in tensors if not t.is_sparse]
    parts = [squared_norm(t).double() for t in tensors if t.is_sparse]
    if dense:
        dtype = torch.promote_types(dense[0].dtype, torch.float32)
        parts.append(torch.stack(torch._foreach_norm(dense, 2, dtype=dtype)).double().square().sum())
    return torch.stack(parts).sum()


class NormState:
    """The hook's state: per-bucket squared norms of the current step, local and reduced."""

    def __init__(self, process_group: dist.ProcessGroup | None = None):
        self.process_group = process_group
        self.local: list[torch.Tensor] = []
        self.reduced: list[torch.Tensor] = []

    def take(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(Σ local |bucket|², Σ reduced |bucket|²) since the last call, as device tensors; None
        if no bucket was reduced (a step that never synchronised)."""
        if not self.local or len(self.local) != len(self.reduced):
            self.local, self.reduced = [], []
            return None
        local, reduced = torch.stack(self.local).sum(), torch.stack(self.reduced).sum()
        self.local, self.reduced = [], []
        return local, reduced

    def step_norms(self, accum: int, grad_scale: torch.Tensor | None = None) -> torch.Tensor | None:
        """This worker's step: (|local gradient|², |all-reduced gradient|²) on the device (see the
        module); None if no bucket was reduced. `accum` is unused: the buckets already hold the
        accumulated gradient."""
        return _unscaled(self.take(), grad_scale)


def noise_scale_hook(state: NormState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP's default all-reduce, with the bucket's squared norm taken before and after it.

    Register with `ddp_model.register_comm_hook(NormState(), noise_scale_hook)` before the first
    backward. The gradients DDP writes back are exactly those of the default hook.
    """
    state.local.append(squared_norm(bucket.buffer()))  # before: allreduce_hook divides in place

    def after(fut: torch.futures.Future) -> torch.Tensor:
        reduced = fut.value()
        state.reduced.append(squared_norm(reduced))
        return reduced

    return allreduce_hook(state.process_group, bucket).then(after)


def _unscaled(norms: tuple[torch.Tensor, torch.Tensor] | None,
              grad_scale: torch.Tensor | None) -> torch.Tensor | None:
    """`norms` as one float64 device tensor divided by `grad_scale`² (the fp16 loss scale the
    gradients carry); None for None. Reads nothing back from the device."""
    if norms is None:
        return None
    stacked = torch.stack([n.to(torch.float64) for n in norms])
    return stacked if grad_scale is None else stacked / grad_scale.to(torch.float64).square()


class MicroBatchNorms:
    """One worker with gradient accumulation: each micro-batch's gradient norm against the
    accumulated gradient's (the micro-batches stand in for the workers).

    The hooks see the gradient of the loss each micro-batch back-propagates, `loss / accum` in
    the training loop; `step_norms(accum)` undoes that scaling. Call `remove()` to unhook.
    """

    FLUSH = 32
    """Incoming gradients held before their norms are taken in one launch."""

    def __init__(self, params: list[torch.nn.Parameter]):
        self.params = [p for p in params if p.requires_grad]
        self.sq: list[torch.Tensor] = []
        self.held: list[torch.Tensor] = []
        self.active = True
        """Off in a phase without accumulation, which has nothing to compare: the hooks do nothing."""
        self.handles = [p.register_hook(self._hook) for p in self.params]

    def _hook(self, grad: torch.Tensor) -> None:
        if self.active:
            self.held.append(grad)
            if len(self.held) >= self.FLUSH:
                self._flush()

    def _flush(self) -> None:
        if self.held:
            self.sq.append(sum_of_squared_norms(self.held))
            self.held = []

    def step_norms(self, accum: int, grad_scale: torch.Tensor | None = None) -> torch.Tensor | None:
        """(mean over micro-batches of |g_i|², |Σ g_i / accum|²) for the step just done, on the
        device (see the module); None without accumulation or when no gradient arrived. Call it
        before the optimizer step, which clips and zeroes the accumulated gradient."""
        self._flush()
        sq, self.sq = self.sq, []
        grads = [p.grad for p in self.params if p.grad is not None]
        if accum < 2 or not sq or not grads:
            return None
        # Each hook saw g_i / accum: Σ_i |g_i|² / accum = accum · Σ(hooked squared norms).
        hooked = torch.stack(sq).sum(dtype=torch.float64) * accum
        accumulated = sum_of_squared_norms(grads)
        return _unscaled((hooked, accumulated), grad_scale)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []
