"""LAMB, LANS and LARS on a CUDA GPU: the fused Triton kernels give the CPU's float64 results,
``impl='auto'`` picks them, and a step neither syncs with the host nor launches a kernel per
tensor. Every test here needs a GPU (and the triton package, which CUDA builds of torch install)
and skips without one; ``test_optim_triton.py`` checks the same kernels without a GPU.
"""
from __future__ import annotations

import pytest
import torch

from scaling_study.optim import Lamb, Lans, Lars, _triton

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# 0-dim, one element, a tensor of two chunks (65_536 each) and a ragged tail, a matrix, all-zero
# weights, all-zero gradients, and small ones (LayerNorm-like)
SHAPES = [(), (1,), (140_001,), (40, 30), (16, 8), (33,), (768,), (3,)]
ZERO_W, ZERO_G = 4, 5
CASES = {Lamb: dict(weight_decay=0.01), Lans: dict(weight_decay=0.01),
         Lars: dict(weight_decay=0.01, trust_coefficient=0.02, eps=1e-9)}


def _start(dtype: torch.dtype) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ws = [(torch.randn(s, generator=gen) * 0.5).to(dtype) for s in SHAPES]
    ws[ZERO_W].zero_()
    return ws


def _grad(step: int, i: int, like: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1000 * step + i)
    g = torch.randn(like.shape, generator=gen) * 1e-2 * (1 + step)
    return g.mul_(0) if i == ZERO_G else g


def _run(cls, device: str, impl: str, dtype: torch.dtype, start: list | None = None,
         misaligned: bool = False, steps: int = 4) -> list[torch.Tensor]:
    """Weights after ``steps`` steps (from ``start``, else :func:`_start`), on the CPU; two
    groups (decayed, plain) as in BERT. ``misaligned`` puts the last tensor one element into a
    buffer (no 16-byte alignment: the kernels' variant without vector loads)."""
    ws = [w.to(dtype=dtype, device=device) for w in (start or _start(dtype))]
    if misaligned:
        buffer = torch.empty(ws[-1].numel() + 1, dtype=dtype, device=device)
        ws[-1] = buffer[1:].copy_(ws[-1])
    params = [torch.nn.Parameter(w) for w in ws]
    half = len(params) // 2
    groups = [{"params": params[:half], **CASES[cls]},
              {"params": params[half:], "weight_decay": 0.0}]
    opt = cls(groups, lr=0.02, impl=impl, **{k: v for k, v in CASES[cls].items()
                                             if k != "weight_decay"})
    for step in range(steps):
        for i, p in enumerate(params):
            p.grad = _grad(step, i, p).to(dtype=dtype, device=device)
        opt.step()
    return [p.detach().cpu() for p in params]


@pytest.mark.parametrize("misaligned", [False, True])
@pytest.mark.parametrize("cls", [Lamb, Lans, Lars])
def test_cuda_kernels_match_the_cpu_in_float64(cls, misaligned):
    want = _run(cls, "cpu", "foreach", torch.float64)
    got = _run(cls, "cuda", "fused", torch.float32, misaligned=misaligned)
    for i, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g.double(), w, rtol=2e-5, atol=1e-6,
                                   msg=lambda m, i=i: f"tensor {i}: {m}")


@pytest.mark.parametrize("cls", [Lamb, Lans, Lars])
def test_cuda_bfloat16_follows_the_cpu_float64_run(cls):
    """bf16 weights and state move like a float64 run from the same (bf16) start, up to bf16
    rounding to nearest even on store (half an ulp per store)."""
    w0 = [w.double() for w in _start(torch.bfloat16)]
    want = _run(cls, "cpu", "foreach", torch.float64, start=w0, steps=3)
    got = _run(cls, "cuda", "fused", torch.bfloat16, steps=3)
    for i, (g, w, start) in enumerate(zip(got, want, w0)):
        assert g.dtype == torch.bfloat16
        moved, err = (w - start).norm(), (g.double() - w).norm()
        assert err <= 0.1 * moved + 5e-3 * start.norm() + 1e-6, (i, err, moved)


@pytest.mark.parametrize("cls", [Lamb, Lans, Lars])
def test_auto_takes_the_triton_kernels_for_cuda_tensors(cls, monkeypatch):
    assert _triton.available(), "CUDA builds of torch ship Triton"
    calls = []
    name = f"{cls.__name__.lower()}_update"
    real = getattr(_triton, name)
    monkeypatch.setattr(_triton, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    _run(cls, "cuda", "auto", torch.float32, steps=1)
    assert len(calls) == 2  # one call per group


@pytest.mark.parametrize("cls", [Lamb, Lans, Lars])
def test_a_step_never_waits_for_the_gpu(cls):
    """torch raises on any synchronising call (a .item(), a blocking copy) in a step."""
    params = [torch.nn.Parameter(torch.randn(s, device="cuda")) for s in SHAPES]
    opt = cls(params, lr=0.01, weight_decay=0.01)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()  # compiles the kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


@pytest.mark.parametrize("cls", [Lamb, Lans, Lars])
def test_a_step_launches_a_few_kernels_whatever_the_number_of_tensors(cls):
    """200 tensors: the foreach path launches a kernel per tensor for every per-tensor factor;
    the fused path a fixed handful (kernels, small vector ops and copies of the tables)."""
    params = [torch.nn.Parameter(torch.randn(64, device="cuda")) for _ in range(200)]
    opt = cls(params, lr=0.01, weight_decay=0.01, impl="fused")
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        opt.step()
        torch.cuda.synchronize()
    on_gpu = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    assert 0 < len(on_gpu) < 40, sorted({e.name for e in on_gpu})
