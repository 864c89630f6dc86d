"""The fused CUDA kernels (Triton) against the foreach math, on a machine without a GPU.

Triton's interpreter runs the very kernels the GPU runs, on CPU tensors, so these tests check the
kernels' math, chunking and indexing against :mod:`scaling_study.optim.functional`, with chunks of
64 elements and blocks of 32 (so that small tensors span several chunks, whole blocks and ragged
tails). Triton takes the interpreter only if ``TRITON_INTERPRET=1`` is set when it is first
imported (its own library's functions are defined then), so where there is no GPU this module sets
it for the whole test process, which then never runs compiled Triton; with a GPU the interpreted
tests skip and ``test_optim_cuda.py`` runs the kernels compiled. A compile test builds every
kernel for a Hopper GPU in a subprocess (no GPU needed) so that what the interpreter accepts also
compiles. All of this needs the ``triton`` package (CUDA builds of torch install it;
``pip install --no-deps triton`` adds it to a CPU build) and skips without it; the fallback
without Triton is tested in any case.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import warnings

import pytest
import torch

from scaling_study.optim import Lamb, Lans, Lars, _triton, base
from scaling_study.optim import functional as F

HAS_TRITON = importlib.util.find_spec("triton") is not None
if HAS_TRITON and not torch.cuda.is_available() and "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"
INTERPRETED = HAS_TRITON and os.environ.get("TRITON_INTERPRET") == "1"
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="needs the triton package")

# name -> shape: 0-dim, one element, no element, three chunks with a tail, a block plus a tail,
# all-zero weights, all-zero gradients; "view" is not 16-byte aligned (one element into a buffer)
SHAPES = {"scalar": (), "one": (1,), "three": (3,), "long": (150,), "empty": (0, 4), "mat": (7, 9),
          "zero_w": (16,), "zero_g": (33,), "view": (37,)}


@pytest.fixture
def triton_on_cpu(monkeypatch):
    """The CUDA path, interpreted on CPU tensors: ``impl='fused'`` on the CPU goes to it too."""
    if not INTERPRETED:
        pytest.skip("needs the triton package, and no GPU (else the kernels run compiled)")
    monkeypatch.setattr(_triton, "CHUNK", 64)
    monkeypatch.setattr(_triton, "BLOCK", 32)
    monkeypatch.setattr(_triton, "SBLOCK", 2)
    monkeypatch.setattr(_triton, "supports", functools.partial(_triton.supports,
                                                               device_type="cpu"))
    monkeypatch.setitem(base.FUSED, "cpu", _triton)
    assert _triton.available()


def _tensors(dtype=torch.float32, seed=0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for name, shape in SHAPES.items():
        if name == "view":
            out.append((torch.randn(40, generator=gen) * 0.5)[1:38].to(dtype))
        else:
            out.append((torch.randn(shape, generator=gen) * 0.5).to(dtype))
    out[list(SHAPES).index("zero_w")].zero_()
    return out


def _grads(step: int, like: list[torch.Tensor]) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    grads = [torch.randn(t.shape, generator=gen).to(t.dtype) * 10.0 ** -(step + 1) for t in like]
    grads[list(SHAPES).index("zero_g")].zero_()
    return grads


def _run_both(update_name: str, n_state: int, steps: int = 2, **kwargs):
    """Run the kernels and the foreach math from the same start; return both weight lists."""
    runs = []
    for ops in (_triton, F):
        params = _tensors()
        if ops is _triton:  # the misaligned view stays a view into its buffer
            assert params[-1].data_ptr() % 16 != 0
        states = [[torch.zeros_like(p) for p in params] for _ in range(n_state)]
        for step in range(steps):
            extra = (step + 1,) if n_state == 2 else ()  # the group's step count
            getattr(ops, update_name)(params, _grads(step, params), *states, *extra, **kwargs)
        runs.append(params)
    return runs


def _assert_close(got, want, rtol=1e-5, atol=1e-6):
    for name, g, w in zip(SHAPES, got, want):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


ADAM = dict(lr=0.02, beta1=0.9, beta2=0.999, eps=1e-6)
LAMB_CASES = {
    "default": dict(weight_decay=0.01, adapt=True),
    "no_decay_no_adapt_no_bias_correction": dict(weight_decay=0.0, adapt=False,
                                                  bias_correction=False),
    "clip_and_bounds": dict(weight_decay=0.01, adapt=True, trust_clip=True,
                            weight_norm_bounds=(0.5, 2.0)),
}


@pytest.mark.parametrize("case", sorted(LAMB_CASES))
def test_lamb_kernels_match_foreach(triton_on_cpu, case):
    got, want = _run_both("lamb_update", 2, **ADAM, **LAMB_CASES[case])
    _assert_close(got, want)


@pytest.mark.parametrize("weight_decay, bias_correction", [(0.01, True), (0.0, False)])
def test_lans_kernels_match_foreach(triton_on_cpu, weight_decay, bias_correction):
    got, want = _run_both("lans_update", 2, **ADAM, weight_decay=weight_decay,
                          bias_correction=bias_correction)
    _assert_close(got, want)


@pytest.mark.parametrize("weight_decay, adapt", [(0.01, True), (0.0, True), (0.01, False)])
def test_lars_kernels_match_foreach(triton_on_cpu, weight_decay, adapt):
    got, want = _run_both("lars_update", 1, lr=0.5, momentum=0.9, weight_decay=weight_decay,
                          trust_coefficient=0.02, eps=1e-9, adapt=adapt)
    _assert_close(got, want)


def _optimizer_run(cls, impl: str, start: list[torch.Tensor] | None = None, steps: int = 2,
                   **kwargs):
    params = [torch.nn.Parameter(t) for t in (_tensors() if start is None else start)]
    groups = [{"params": params[:4], "weight_decay": 0.01}, {"params": params[4:]}]
    opt = cls(groups, lr=0.05, impl=impl, **kwargs)
    for step in range(steps):
        for p, g in zip(params, _grads(step, params)):
            p.grad = g
        params[2].grad = None if step == 0 else params[2].grad  # a late first gradient
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("cls", [Lamb, Lans, Lars])
def test_optimizers_take_the_kernels_and_match_foreach(triton_on_cpu, monkeypatch, cls):
    calls = []
    name = f"{cls.__name__.lower()}_update"
    real = getattr(_triton, name)
    monkeypatch.setattr(_triton, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    got = _optimizer_run(cls, "auto")
    assert calls, "impl='auto' did not use the kernels"
    _assert_close(got, _optimizer_run(cls, "foreach"))


@pytest.mark.parametrize("cls", [Lamb, Lans, Lars])
def test_bfloat16_kernels_follow_float32(triton_on_cpu, cls):
    """bf16 weights and state move like a float32 run from the same start, up to bf16 rounding.
    The bound allows ~2.5 bf16 ulps per weight: Triton's interpreter rounds float32 to bfloat16
    by truncation where the GPU rounds to nearest even (test_optim_cuda.py holds the GPU to a
    tighter bound)."""
    kwargs = dict(trust_coefficient=1.0) if cls is Lars else {}
    w0 = [t.float() for t in _tensors(torch.bfloat16)]
    f32 = _optimizer_run(cls, "foreach", [w.clone() for w in w0], **kwargs)
    bf16 = _optimizer_run(cls, "fused", _tensors(torch.bfloat16), **kwargs)
    for name, a, b, w in zip(SHAPES, bf16, f32, w0):
        assert a.dtype == torch.bfloat16
        moved, err = (b - w).norm(), (a.float() - b).norm()
        assert err <= 0.15 * moved + 1e-2 * w.norm() + 1e-6, (name, err, moved)


def test_layout_cuts_tensors_into_chunks_that_never_cross_a_tensor():
    lay = _triton.layout(torch.device("cpu"), (0, 1, 64, 65, 130), 64)
    assert lay.chunk_tensor.tolist() == [1, 2, 3, 3, 4, 4, 4]
    assert lay.chunk_start.tolist() == [0, 0, 0, 64, 0, 64, 128]
    assert lay.first_chunk.tolist() == [0, 0, 1, 2, 4, 7]
    assert lay.n_chunks == 7


def test_without_triton_auto_warns_once_and_falls_back_to_foreach(monkeypatch):
    monkeypatch.setattr(_triton, "KERNELS", "scaling_study.optim._no_such_kernels")
    _triton.kernels.cache_clear()
    _triton.available.cache_clear()
    monkeypatch.setattr(_triton, "supports", functools.partial(_triton.supports,
                                                               device_type="cpu"))
    monkeypatch.setitem(base.FUSED, "cpu", _triton)
    try:
        with pytest.warns(RuntimeWarning, match="fused CUDA kernels unavailable.*Triton"):
            got = _optimizer_run(Lamb, "auto")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once only
            assert not _triton.available()
        _assert_close(got, _optimizer_run(Lamb, "foreach"), rtol=0, atol=0)
        with pytest.raises(RuntimeError, match=r"impl='fused'\) needs .* on CUDA with Triton"):
            _optimizer_run(Lamb, "fused")
    finally:
        _triton.kernels.cache_clear()
        _triton.available.cache_clear()


# Compiles every kernel for sm_90 and prints one line per kernel and variant: name, dtype, whether
# a cubin came out, whether the PTX has 16-byte vector loads.
_COMPILE = """
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from scaling_study.optim import _triton
import scaling_study.optim._triton_kernels as K

TYPES = {"ptrs": "*i64", "chunk_tensor": "*i64", "chunk_start": "*i64", "numel": "*i64",
         "first_chunk": "*i64", "n": "i32", "n_chunks": "i32", "beta1": "fp32",
         "one_minus_beta1": "fp32", "beta2": "fp32", "one_minus_beta2": "fp32", "eps": "fp32",
         "wd": "fp32", "momentum": "fp32", "c1": "fp32", "c2": "fp32", "factor1": "fp32",
         "factor2": "fp32", "lower": "fp32", "upper": "fp32"}  # the rest: float32 arrays
for name in ["sumsq", "segment_norms", "lamb_phase1", "lamb_phase2", "lans_phase1",
             "lans_phase2", "lars_apply", "trust_scales"]:
    fn = getattr(K, name)
    for dtype, aligned in [(torch.float32, True), (torch.bfloat16, False)]:
        consts = dict(DTYPE=K.DTYPES[dtype], CHUNK=_triton.CHUNK, BLOCK=_triton.BLOCK,
                      ALIGNED=aligned, LIST=1, SBLOCK=_triton.SBLOCK, K=2, BOUNDED=aligned, CLIP=aligned)
        consts = {k: v for k, v in consts.items() if k in fn.arg_names}
        sig = {a: "constexpr" if a in consts else TYPES.get(a, "*fp32") for a in fn.arg_names}
        out = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", 90, 32))
        print(name, dtype, aligned, bool(out.asm.get("cubin")), "ld.global.v4" in out.asm["ptx"])
"""


@needs_triton
def test_kernels_compile_for_a_hopper_gpu_with_vector_loads():
    """Every kernel compiles to a cubin for sm_90 (no GPU needed: Triton ships ptxas), float32
    with aligned addresses and bfloat16 without; the aligned float32 passes use 16-byte loads.
    In a subprocess: this one may have Triton in interpreter mode."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run([sys.executable, "-c", _COMPILE], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert len(lines) == 16
    for name, dtype, aligned, cubin, vector in lines:
        assert cubin == "True", (name, dtype)
        if aligned == "True" and name not in ("segment_norms", "trust_scales"):
            assert vector == "True", (name, dtype)
