"""Fused multi-tensor kernels for LAMB, LANS and LARS on CUDA tensors, written in Triton.

Why: torch's foreach kernels (:mod:`scaling_study.optim.functional`) are multi-tensor launches
only while every list holds tensors of the same shapes. The per-tensor factors of these
optimizers (trust ratios, gradient scales) are lists of 0-dim tensors, so each
``_foreach_mul_(tensors, factors)`` leaves that fast path and launches one kernel per tensor
(206 for BERT-base, 2-3 times a step); the overloads that take per-tensor scalars in one launch
(``ScalarList``, ``.Tensor`` of addcmul/addcdiv) want them on the host, which would cost a device
sync per step. The foreach step also makes 15-30 passes over memory and allocates
parameter-sized temporaries. An Adam-like step is bound by memory traffic: AdamW fused reads w,
g, m, v and writes w, m, v (7 accesses per element). These kernels do what the CPU kernels do
(:mod:`scaling_study.optim._native`), in the layout of NVIDIA apex's multi-tensor apply:

1. LAMB: moments + the per-chunk squared norms of w and of the update (6 accesses);
   LANS: one read-only pass for ‖g‖ first, then the same with two update norms (7);
2. per-tensor norms (chunk sums in order) and the trust ratios, in one small launch
   (``trust_scales``: the operations of :func:`~scaling_study.optim.functional.trust_ratio`),
3. the update, recomputed from the stored moments, applied in place (4, LANS 5).

So LAMB moves 10/7 and LANS 12/7 of AdamW's bytes, with no temporaries and no host sync: a step
is three launches per group for LAMB (about seven for LANS, whose ‖g‖ comes first) whatever the
number of tensors, plus a copy of the address table when the tensors moved. LARS: the norms of w and g, then one pass.

The kernels are in :mod:`scaling_study.optim._triton_kernels`, imported on first use: without
Triton (CPU builds of torch) :func:`available` warns once and the optimizers use foreach. Triton's
interpreter (``TRITON_INTERPRET=1``) runs the same kernels on CPU tensors, which is how the tests
check them where there is no GPU.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import Tensor

from scaling_study.optim import functional as F

KERNELS = "scaling_study.optim._triton_kernels"
DTYPES = (torch.float32, torch.bfloat16)
CHUNK = 1 << 16  # elements per program: ~1.7 k programs over BERT-base, all resident on a big GPU
BLOCK = 1024  # elements per loop iteration of a program
SBLOCK = 256  # chunk sums read per iteration by segment_norms
TABLES_KEPT = 16  # address tables kept on the device (a few per parameter group)


@functools.cache
def kernels() -> ModuleType | None:
    """The compiled-on-demand Triton kernels, or None (with one warning) without Triton."""
    try:
        return importlib.import_module(KERNELS)
    except ImportError as exc:
        warnings.warn(f"scaling_study.optim: fused CUDA kernels unavailable ({exc}; they need "
                      "Triton, which CUDA builds of torch install); using the slower foreach "
                      "implementation", RuntimeWarning, stacklevel=2)
        return None


@functools.cache
def available() -> bool:
    """Whether the kernels import *and launch*: one trial launch on a one-element tensor.

    Triton builds a small launcher for its first kernel with a C compiler against Python's
    headers; an image without them imports Triton fine and fails only at that first launch. So
    the trial runs once, here, and any failure of it (Triton raises compiler, subprocess and
    runtime errors alike) means: warn once and use the foreach path, never crash at step 1.
    """
    k = kernels()
    if k is None:
        return False
    device = (torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available()
              else torch.device("cpu"))  # the CPU: Triton's interpreter (tests)
    try:
        trial_launch(device)
    except Exception as exc:  # noqa: BLE001 - whatever stops a launch stops the fused path
        warnings.warn(f"scaling_study.optim: fused CUDA kernels unavailable: a trial launch "
                      f"failed ({type(exc).__name__}: {str(exc).strip()[:300]}; Triton needs a C "
                      "compiler and Python's headers to build its launcher); using the slower "
                      "foreach implementation", RuntimeWarning, stacklevel=2)
        return False
    return True


def trial_launch(device: torch.device) -> None:
    """Launch ``sumsq`` once over one element on ``device`` and check its result."""
    x = torch.full((1,), 3.0, device=device)
    (c,) = launches([[x]])
    out = c.partial(1)
    with c.on_device():
        c.sumsq(0, out[0])
    if float(out[0, 0]) != 9.0:  # the one read-back of the process, at start-up
        raise RuntimeError(f"sumsq of [3.0] gave {float(out[0, 0])}, not 9.0")


def supports(tensors: Sequence[Tensor], device_type: str = "cuda") -> bool:
    """Whether the kernels can update these tensors: CUDA, float32/bfloat16, contiguous.
    (``device_type="cpu"`` is for Triton's interpreter, in tests.)"""
    t0 = tensors[0]
    return (t0.device.type == device_type and t0.dtype in DTYPES
            and all(t.is_contiguous() and t.dtype == t0.dtype for t in tensors))


def _to_device(values: Sequence[float] | Sequence[int], dtype: torch.dtype,
               device: torch.device) -> Tensor:
    """A host list on the device without a sync: pinned staging and a non-blocking copy."""
    pinned = device.type == "cuda"
    return torch.tensor(values, dtype=dtype, pin_memory=pinned).to(device, non_blocking=pinned)


@dataclass(frozen=True)
class Layout:
    """The chunks of a list of tensors (by element count), on their device."""
    chunk_tensor: Tensor  # tensor index per chunk
    chunk_start: Tensor  # first element per chunk
    numel: Tensor  # elements per tensor
    first_chunk: Tensor  # n + 1 offsets into the chunks, per tensor
    n_chunks: int


@functools.lru_cache(maxsize=64)
def layout(device: torch.device, numels: tuple[int, ...], chunk: int) -> Layout:
    """Cut tensors of ``numels`` elements into chunks of at most ``chunk`` (cached per shape
    list: a model's buckets keep their shapes from step to step)."""
    tensor, start, first = [], [], [0]
    for t, numel in enumerate(numels):
        for begin in range(0, numel, chunk):
            tensor.append(t)
            start.append(begin)
        first.append(len(tensor))
    return Layout(*(_to_device(v, torch.int64, device) for v in (tensor, start, numels, first)),
                  n_chunks=len(tensor))


@functools.lru_cache(maxsize=TABLES_KEPT)
def address_table(device: torch.device, addresses: tuple[int, ...]) -> Tensor:
    """The kernels' table of data addresses on the device, built once per address set: while a
    bucket's tensors stay where they are (parameters and state always; DDP's bucket-view
    gradients, and gradients the caching allocator hands the same blocks again), a step copies
    nothing to the device for it."""
    return _to_device(addresses, torch.int64, device)


def launches(lists: Sequence[Sequence[Tensor]]) -> list["_Launch"]:
    """The launches that update ``lists`` (weights, gradients, state): one, or two where some
    tensors are not 16-byte aligned — those (e.g. views into DDP's gradient buckets at odd
    offsets) go to a launch without vector loads, the rest keep them."""
    addresses = [[t.data_ptr() for t in ts] for ts in lists]
    n = len(lists[0])
    aligned = [all(a[i] % 16 == 0 for a in addresses) for i in range(n)]
    if all(aligned) or not any(aligned):
        return [_Launch(lists, addresses, aligned=aligned[0])]
    out = []
    for flag in (True, False):
        idx = [i for i in range(n) if aligned[i] == flag]
        part = [[ts[i] for i in idx] for ts in lists]
        if not _empty(part[0]):
            out.append(_Launch(part, [[a[i] for i in idx] for a in addresses], aligned=flag))
    return out


class _Launch:
    """One launch's kernel arguments: the chunk layout and the table of addresses."""

    def __init__(self, lists: Sequence[Sequence[Tensor]], addresses: list[list[int]], *,
                 aligned: bool):
        self.k = kernels()
        if self.k is None:
            raise RuntimeError("the fused CUDA kernels are unavailable (see the warning above)")
        params = lists[0]
        self.lists = lists
        self.device = params[0].device
        self.n = len(params)
        self.layout = layout(self.device, tuple(p.numel() for p in params), CHUNK)
        # addresses, not tensors: gradients may be new tensors every step (zero_grad to None)
        self.ptrs = address_table(self.device, tuple(a for ts in addresses for a in ts))
        # 16-byte alignment lets the kernels use vector loads (see `launches`)
        self.aligned = aligned
        self.dtype = self.k.DTYPES[params[0].dtype]

    def args(self) -> tuple:
        lay = self.layout
        return self.ptrs, self.n, lay.chunk_tensor, lay.chunk_start, lay.numel

    def consts(self) -> dict:
        if CHUNK % 16 or BLOCK % 16:  # the kernels tell the compiler chunks start at 16k
            raise ValueError(f"CHUNK={CHUNK} and BLOCK={BLOCK} must be multiples of 16")
        return dict(DTYPE=self.dtype, CHUNK=CHUNK, BLOCK=BLOCK, ALIGNED=self.aligned)

    def scalars(self, values: Sequence[float]) -> Tensor:
        return _to_device(values, torch.float32, self.device)

    def partial(self, k: int) -> Tensor:
        return torch.empty(k, self.layout.n_chunks, dtype=torch.float32, device=self.device)

    def norms(self, partial: Tensor) -> Tensor:
        """Per-tensor L2 norms, shape ``(k, n)``, from per-chunk sums of squares ``(k, chunks)``."""
        out = torch.empty(partial.shape[0], self.n, dtype=torch.float32, device=self.device)
        self.k.segment_norms[(self.n, partial.shape[0])](
            partial, self.layout.first_chunk, out, self.n, self.layout.n_chunks, SBLOCK=SBLOCK)
        return out

    def trust_scales(self, partial: Tensor, factors: tuple[float, ...], *, clip: bool = False,
                     bounds: tuple[float, float] | None = None) -> Tensor:
        """``(K, n)``: factor_k · trust ratio of ‖w‖ (partial row 0) over ‖r_k‖ (row k), the
        norms and ratios in one launch (``trust_scales`` kernel)."""
        k = len(factors)
        out = torch.empty(k, self.n, dtype=torch.float32, device=self.device)
        lower, upper = map(float, bounds) if bounds is not None else (0.0, 0.0)
        self.k.trust_scales[(self.n,)](partial, self.layout.first_chunk, out, self.n, self.layout.n_chunks,
                                       float(factors[0]), float(factors[-1]), lower, upper, K=k,
                                       BOUNDED=bounds is not None, CLIP=clip, SBLOCK=SBLOCK)
        return out

    def sumsq(self, j: int, out: Tensor) -> None:
        """Write the per-chunk Σ x² of list ``j`` into ``out`` (one row of a partial)."""
        self.k.sumsq[self.grid](*self.args(), out, LIST=j, **self.consts())

    @property
    def grid(self) -> tuple[int]:
        return (self.layout.n_chunks,)

    def on_device(self) -> contextlib.AbstractContextManager:
        """Launch on the tensors' GPU, whichever is current."""
        if self.device.type == "cuda":
            return torch.cuda.device(self.device)
        return contextlib.nullcontext()


def _empty(params: Sequence[Tensor]) -> bool:
    return not params or sum(p.numel() for p in params) == 0


def _adam_args(beta1: float, beta2: float, eps: float, weight_decay: float) -> tuple[float, ...]:
    """β₁, 1−β₁, β₂, 1−β₂, ε, λ as floats: the differences taken in double (in float32,
    1 − 0.999 is 1.3e-5 off), and never ints, which Triton would compile separately for."""
    return tuple(map(float, (beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps, weight_decay)))


def lamb_update(params, grads, exp_avgs, exp_avg_sqs, step, *, lr, beta1, beta2, eps,
                weight_decay, adapt, bias_correction=True, trust_clip=False,
                weight_norm_bounds=None) -> None:
    """:func:`scaling_study.optim.functional.lamb_update`, fused (same arguments and result)."""
    if _empty(params):
        return
    c1, c2 = F.inverse_bias_corrections(step, beta1, beta2, bias_correction)
    for c in launches([params, grads, exp_avgs, exp_avg_sqs]):
        _lamb(c, c1, c2, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
              adapt=adapt, trust_clip=trust_clip, weight_norm_bounds=weight_norm_bounds)


def _lamb(c: _Launch, c1: float, c2: float, *, lr, beta1, beta2, eps, weight_decay, adapt,
          trust_clip, weight_norm_bounds) -> None:
    partial = c.partial(2)
    with c.on_device():
        c.k.lamb_phase1[c.grid](*c.args(), c1, c2, *_adam_args(beta1, beta2, eps, weight_decay),
                                partial, c.layout.n_chunks, **c.consts())
        scale = (c.trust_scales(partial, (lr,), clip=trust_clip, bounds=weight_norm_bounds)[0] if adapt
                 else torch.full((c.n,), float(lr), dtype=torch.float32, device=c.device))
        c.k.lamb_phase2[c.grid](*c.args(), c1, c2, float(eps), float(weight_decay), scale,
                                **c.consts())


def lans_update(params, grads, exp_avgs, exp_avg_sqs, step, *, lr, beta1, beta2, eps,
                weight_decay, bias_correction=True) -> None:
    """:func:`scaling_study.optim.functional.lans_update`, fused (same arguments and result)."""
    if _empty(params):
        return
    c1, c2 = F.inverse_bias_corrections(step, beta1, beta2, bias_correction)
    for c in launches([params, grads, exp_avgs, exp_avg_sqs]):
        _lans(c, c1, c2, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)


def _lans(c: _Launch, c1: float, c2: float, *, lr, beta1, beta2, eps, weight_decay) -> None:
    g_partial, partial = c.partial(1), c.partial(3)
    with c.on_device():
        c.sumsq(1, g_partial)
        (g_norm,) = c.norms(g_partial)
        ginv = torch.where(g_norm > 0, 1.0 / g_norm, 1.0)
        c.k.lans_phase1[c.grid](*c.args(), ginv, c1, c2,
                                *_adam_args(beta1, beta2, eps, weight_decay), partial,
                                c.layout.n_chunks, **c.consts())
        s1, s2 = c.trust_scales(partial, (lr * beta1, lr * (1.0 - beta1)))
        c.k.lans_phase2[c.grid](*c.args(), ginv, c1, c2, float(eps), float(weight_decay), s1,
                                s2, **c.consts())


def lars_update(params, grads, momentum_buffers, *, lr, momentum, weight_decay,
                trust_coefficient, eps, adapt) -> None:
    """:func:`scaling_study.optim.functional.lars_update`, fused (same arguments and result)."""
    if _empty(params):
        return
    for c in launches([params, grads, momentum_buffers]):
        _lars(c, lr=lr, momentum=momentum, weight_decay=weight_decay,
              trust_coefficient=trust_coefficient, eps=eps, adapt=adapt)


def _lars(c: _Launch, *, lr, momentum, weight_decay, trust_coefficient, eps, adapt) -> None:
    with c.on_device():
        if adapt:
            partial = c.partial(2)
            c.sumsq(0, partial[0])
            c.sumsq(1, partial[1])
            w_norm, g_norm = c.norms(partial)
            local = F.lars_local_lr(w_norm, g_norm, trust_coefficient=trust_coefficient,
                                    weight_decay=weight_decay, eps=eps)
        else:
            local = torch.ones(c.n, dtype=torch.float32, device=c.device)
        c.k.lars_apply[c.grid](*c.args(), float(momentum), float(weight_decay), local * lr,
                               **c.consts())
