"""Fused CPU kernels for LAMB, LANS and LARS: build once per machine, load with ctypes, call.

Why: on a CPU an optimizer step is bound by memory traffic. Over BERT-base (110 M float32
parameters, 440 MB per tensor kind) torch's ``AdamW(fused=True)`` reads w, g, m, v and writes w,
m, v once: ~45-65 ms on the 2-core machine this was tuned on. LAMB and LANS need per-tensor
norms between the moment update and the parameter update. Written with ``torch._foreach_*``
kernels (:mod:`scaling_study.optim.functional`) a step makes 15-30 full passes over memory, and
fresh temporaries add page faults: measured 10x (LAMB) and 19x (LANS) AdamW fused here. Using
torch's fused Adam kernel for the moments and foreach ops for the rest would take ~3x (six
extra passes: a copy for λw, two norms, the scaled update; timed piece by piece).
``torch.compile`` of the per-tensor math compiled for ~27 s and ran a LAMB pass at ~118 ms;
flattening the parameters into one buffer saves no pass. So the step is two passes of
hand-written C++ (csrc/fused_cpu.cpp):

1. moments + the update's and the weights' squared norms per tensor (nothing else is written),
2. the trust ratios (a few tiny torch ops on the stacked norms), then the update, recomputed from
   the stored moments and applied in place. Keeping the update in a buffer instead measured the
   same and would cost a parameter-sized buffer.

All tensors of a group go to one call, so there is one OpenMP region per pass rather than one
per tensor and per op; chunks are scheduled dynamically. Measured with ``scaling-study bench
optim`` (same process, 2 threads): LAMB 1.6x and LANS 2.1x AdamW fused, LARS 1.1x.

LANS adds one read-only pass for the gradient norms before (1). The kernels are compiled with the
system C++ compiler (``$CXX``, else ``g++``/``c++``) on first use into
``$SCALING_STUDY_CACHE`` (default ``~/.cache/scaling_study/kernels``), keyed by the source, the
flags, the compiler and the CPU, so concurrent workers and heterogeneous hosts are safe. They
link OpenMP by soname, which resolves to the libgomp torch has already loaded: one thread pool,
sized by ``torch.get_num_threads()``. Without a compiler (or with ``SCALING_STUDY_NATIVE=0``) the
optimizers fall back to :mod:`scaling_study.optim.functional`, with one warning.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from scaling_study.optim import functional as F

SOURCE = Path(__file__).with_name("csrc") / "fused_cpu.cpp"
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-fno-math-errno",
         "-fno-trapping-math", "-std=c++17")
DTYPES = {torch.float32: 0, torch.bfloat16: 1}
_ABI_VERSION = 2
_VOIDP, _I64, _INT, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
_SIGNATURES = {
    "ss_sumsq": (_INT, _I64, _VOIDP, _VOIDP, _VOIDP, _INT),
    "ss_lamb_phase1": (_INT, _I64, *[_VOIDP] * 7, *[_F] * 6, _VOIDP, _INT),
    "ss_lamb_phase2": (_INT, _I64, *[_VOIDP] * 6, _F, _F, _VOIDP, _INT),
    "ss_lans_phase1": (_INT, _I64, *[_VOIDP] * 8, *[_F] * 6, _VOIDP, _INT),
    "ss_lans_phase2": (_INT, _I64, *[_VOIDP] * 8, _F, _F, _VOIDP, _VOIDP, _INT),
    "ss_lars_norms": (_INT, _I64, _VOIDP, _VOIDP, _VOIDP, _VOIDP, _INT),
    "ss_lars_apply": (_INT, _I64, *[_VOIDP] * 4, _F, _F, _VOIDP, _INT),
}


def _cache_dir() -> Path:
    root = os.environ.get("SCALING_STUDY_CACHE") or Path.home() / ".cache" / "scaling_study"
    return Path(root) / "kernels"


def _cpu_fingerprint() -> str:
    """The CPU's feature flags (what -march=native compiles for), or the machine name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def compiler() -> str | None:
    """The C++ compiler the kernels are built with: ``$CXX``, else ``g++`` or ``c++`` on PATH."""
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def build(force: bool = False) -> Path:
    """Compile the kernels if this machine has no cached build yet; return the library's path."""
    cxx = compiler()
    if not cxx:
        raise OSError("no C++ compiler found (set CXX, or install g++)")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\n".join([SOURCE.read_text(), " ".join(FLAGS), version,
                                    _cpu_fingerprint()]).encode()).hexdigest()[:16]
    out = _cache_dir() / f"fused_cpu-{key}.so"
    if out.exists() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    proc = subprocess.run([cxx, *FLAGS, str(SOURCE), "-o", str(tmp)], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise OSError(f"compiling {SOURCE.name} failed:\n{proc.stderr[-2000:]}")
    os.replace(tmp, out)  # atomic: concurrent builders never load a half-written file
    return out


@functools.cache
def library() -> ctypes.CDLL | None:
    """Return the loaded kernels, or None (with one warning) where they cannot be built."""
    if os.environ.get("SCALING_STUDY_NATIVE", "1") == "0":
        return None
    try:
        lib = ctypes.CDLL(str(build()))
    except (OSError, subprocess.SubprocessError) as exc:
        warnings.warn(f"scaling_study.optim: fused CPU kernels unavailable ({exc}); "
                      "using the slower foreach implementation", RuntimeWarning, stacklevel=2)
        return None
    if lib.ss_abi_version() != _ABI_VERSION:
        raise RuntimeError(f"stale kernel library {lib._name}: delete it and retry")
    for name, argtypes in _SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = None
    return lib


def available() -> bool:
    """Whether the kernels are built and loaded (warns once where they cannot be)."""
    return library() is not None


def supports(tensors: Sequence[Tensor]) -> bool:
    """Whether the kernels can update these tensors: CPU, float32/bfloat16, contiguous."""
    t0 = tensors[0]
    return (t0.device.type == "cpu" and t0.dtype in DTYPES
            and all(t.is_contiguous() and t.dtype == t0.dtype for t in tensors))


class _Call:
    """Pointers and sizes of one list of parameters, shaped for the C calls."""

    def __init__(self, params: Sequence[Tensor]):
        self.lib = library()
        if self.lib is None:
            raise RuntimeError("the fused CPU kernels are unavailable (see the warning above)")
        self.n = len(params)
        self.dtype = DTYPES[params[0].dtype]
        self.numel = torch.tensor([p.numel() for p in params], dtype=torch.int64)
        self.threads = torch.get_num_threads()

    def ptrs(self, tensors: Sequence[Tensor]) -> ctypes.Array:
        return (_VOIDP * self.n)(*[t.data_ptr() for t in tensors])

    def scalars(self, values: Sequence[float] | Tensor) -> Tensor:
        """Per-tensor float32 scalars, contiguous, for the C side to index."""
        return torch.as_tensor(values, dtype=torch.float32).contiguous()

    def per_tensor(self, *values: float) -> tuple[Tensor, ...]:
        """Each host scalar repeated for every tensor (the C side indexes its factors by tensor)."""
        return tuple(torch.full((self.n,), v, dtype=torch.float32) for v in values)


def _betas(beta1: float, beta2: float) -> tuple[float, float, float, float]:
    """β₁, 1−β₁, β₂, 1−β₂ — the differences in double (1 − 0.999f in float is 1.3e-5 off)."""
    return beta1, 1.0 - beta1, beta2, 1.0 - beta2


def lamb_update(params, grads, exp_avgs, exp_avg_sqs, step, *, lr, beta1, beta2, eps,
                weight_decay, adapt, bias_correction=True, trust_clip=False,
                weight_norm_bounds=None) -> None:
    """:func:`scaling_study.optim.functional.lamb_update`, fused (same arguments and result)."""
    c = _Call(params)
    c1, c2 = c.per_tensor(*F.inverse_bias_corrections(step, beta1, beta2, bias_correction))
    sq = torch.empty(2, c.n, dtype=torch.float64)
    c.lib.ss_lamb_phase1(c.dtype, c.n, c.ptrs(params), c.ptrs(grads), c.ptrs(exp_avgs),
                         c.ptrs(exp_avg_sqs), c.numel.data_ptr(), c1.data_ptr(), c2.data_ptr(),
                         *_betas(beta1, beta2), eps, weight_decay, sq.data_ptr(), c.threads)
    w_norm, r_norm = sq.sqrt()
    ratio = (F.trust_ratio(w_norm, r_norm, clip=trust_clip, weight_norm_bounds=weight_norm_bounds)
             if adapt else torch.ones_like(w_norm))
    scale = c.scalars(lr * ratio)
    c.lib.ss_lamb_phase2(c.dtype, c.n, c.ptrs(params), c.ptrs(exp_avgs), c.ptrs(exp_avg_sqs),
                         c.numel.data_ptr(), c1.data_ptr(), c2.data_ptr(), eps, weight_decay,
                         scale.data_ptr(), c.threads)


def lans_update(params, grads, exp_avgs, exp_avg_sqs, step, *, lr, beta1, beta2, eps,
                weight_decay, bias_correction=True) -> None:
    """:func:`scaling_study.optim.functional.lans_update`, fused (same arguments and result)."""
    c = _Call(params)
    gptrs = c.ptrs(grads)
    g_sq = torch.empty(c.n, dtype=torch.float64)
    c.lib.ss_sumsq(c.dtype, c.n, gptrs, c.numel.data_ptr(), g_sq.data_ptr(), c.threads)
    g_norm = g_sq.sqrt()
    ginv = c.scalars(torch.where(g_norm > 0, 1.0 / g_norm, 1.0))
    c1, c2 = c.per_tensor(*F.inverse_bias_corrections(step, beta1, beta2, bias_correction))
    sq = torch.empty(3, c.n, dtype=torch.float64)
    args = (c.ptrs(params), gptrs, c.ptrs(exp_avgs), c.ptrs(exp_avg_sqs), c.numel.data_ptr(),
            ginv.data_ptr(), c1.data_ptr(), c2.data_ptr())
    c.lib.ss_lans_phase1(c.dtype, c.n, *args, *_betas(beta1, beta2), eps, weight_decay,
                         sq.data_ptr(), c.threads)
    w_norm, r1_norm, r2_norm = sq.sqrt()
    s1 = c.scalars(lr * beta1 * F.trust_ratio(w_norm, r1_norm))
    s2 = c.scalars(lr * (1.0 - beta1) * F.trust_ratio(w_norm, r2_norm))
    c.lib.ss_lans_phase2(c.dtype, c.n, *args, eps, weight_decay, s1.data_ptr(), s2.data_ptr(),
                         c.threads)


def lars_update(params, grads, momentum_buffers, *, lr, momentum, weight_decay,
                trust_coefficient, eps, adapt) -> None:
    """:func:`scaling_study.optim.functional.lars_update`, fused (same arguments and result)."""
    c = _Call(params)
    wptrs, gptrs = c.ptrs(params), c.ptrs(grads)
    if adapt:
        sq = torch.empty(2, c.n, dtype=torch.float64)
        c.lib.ss_lars_norms(c.dtype, c.n, wptrs, gptrs, c.numel.data_ptr(), sq.data_ptr(),
                            c.threads)
        w_norm, g_norm = sq.sqrt()
        local = F.lars_local_lr(w_norm, g_norm, trust_coefficient=trust_coefficient,
                                weight_decay=weight_decay, eps=eps)
    else:
        local = torch.ones(c.n, dtype=torch.float64)
    scale = c.scalars(lr * local)
    c.lib.ss_lars_apply(c.dtype, c.n, wptrs, gptrs, c.ptrs(momentum_buffers), c.numel.data_ptr(),
                        momentum, weight_decay, scale.data_ptr(), c.threads)
