"""Triton kernels of the fused CUDA path (:mod:`scaling_study.optim._triton` launches them).

This module imports Triton at import time; :mod:`scaling_study.optim._triton` imports it only on
first use, so that the package imports where Triton is absent (CPU builds of torch).

Conventions (those of csrc/fused_cpu.cpp, so that the two fused paths read alike):

* A step's tensors reach a kernel as a table of data addresses on the device, ``ptrs[j * n + t]``
  for list j (0: weights, 1: gradients, 2-3: state) and tensor t — the multi-tensor-apply layout
  of NVIDIA apex, with the table in memory instead of in the kernel's arguments.
* Work is cut into chunks of ``CHUNK`` elements that never cross a tensor; one program per chunk,
  looping over it ``BLOCK`` elements at a time. ``chunk_tensor``/``chunk_start`` say which.
  The loop runs over the chunk's full blocks with a mask the compiler can see is all-true, then
  once over the ragged tail: with ``ALIGNED`` (every address a multiple of 16 bytes, checked by
  the caller) the full blocks compile to 16-byte vector loads and stores, as torch's own
  multi-tensor kernels use where they can.
* Reductions are written per chunk (``partial[j * n_chunks + chunk]``) and summed per tensor in
  chunk order by :func:`segment_norms`: no atomics, so results do not depend on scheduling.
* Math in float32; weights and state are stored in the parameter's dtype (float32 or bfloat16,
  the constexpr ``DTYPE``), and phase 1 re-reads what it stored (rounded), so the norms belong to
  exactly the update phase 2 applies. Division and square root round as IEEE (``div_rn``,
  ``sqrt_rn``), as torch's own kernels do.
* Per-tensor scalars (gradient scale, update scale) are float32 arrays on the device, indexed by
  tensor: nothing is read back to the host. The bias corrections are one pair per parameter
  group (its step count is a host integer), passed as scalar arguments.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16}  # torch's -> the kernels' DTYPE


@triton.jit
def _chunk(chunk_tensor, chunk_start, numel, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
    """This program's chunk: index c, tensor t, and its elements [begin, end), of which
    [begin, full_end) are whole blocks (both bounds multiples of 16, as the compiler is told)."""
    c = tl.program_id(0)
    t = tl.load(chunk_tensor + c)
    begin = tl.multiple_of(tl.load(chunk_start + c), 16)  # chunks start at multiples of CHUNK
    end = tl.minimum(begin + CHUNK, tl.load(numel + t))
    full_end = begin + (end - begin) // BLOCK * BLOCK
    return c, t, begin, full_end, end


@triton.jit
def _ptr(ptrs, j, n, t, DTYPE: tl.constexpr, ALIGNED: tl.constexpr):
    """Tensor t's data pointer from list j of the address table."""
    p = tl.load(ptrs + j * n + t).to(tl.pointer_type(DTYPE))
    if ALIGNED:
        p = tl.multiple_of(p, 16)
    return p


# Each kernel below is a chunk loop around one block function, which takes the block's element
# indices ``i`` and its mask and returns the block's squared terms (0 where masked).

@triton.jit
def _sumsq_block(x_p, i, mask):
    x = tl.load(x_p + i, mask=mask, other=0.0).to(tl.float32)
    return x * x


@triton.jit
def sumsq(ptrs, n, chunk_tensor, chunk_start, numel, partial, LIST: tl.constexpr,
          DTYPE: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr, ALIGNED: tl.constexpr):
    """partial[chunk] = Σ x² over the chunk, x being list ``LIST``'s tensor."""
    c, t, begin, full_end, end = _chunk(chunk_tensor, chunk_start, numel, CHUNK, BLOCK)
    x_p = _ptr(ptrs, LIST, n, t, DTYPE, ALIGNED)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in range(0, full_end - begin, BLOCK):
        i = begin + k + tl.arange(0, BLOCK)
        acc += _sumsq_block(x_p, i, i < full_end)
    if full_end < end:
        i = full_end + tl.arange(0, BLOCK)
        acc += _sumsq_block(x_p, i, i < end)
    tl.store(partial + c, tl.sum(acc, axis=0))


@triton.jit
def segment_norms(partial, first_chunk, out, n, n_chunks, SBLOCK: tl.constexpr):
    """out[j, t] = √(Σ partial[j, c] over tensor t's chunks), summed in chunk order; grid (n, K)."""
    t = tl.program_id(0)
    j = tl.program_id(1)
    lo = tl.load(first_chunk + t)
    hi = tl.load(first_chunk + t + 1)
    acc = tl.zeros([SBLOCK], dtype=tl.float32)
    for off in range(lo, hi, SBLOCK):
        k = off + tl.arange(0, SBLOCK)
        acc += tl.load(partial + j * n_chunks + k, mask=k < hi, other=0.0)
    tl.store(out + j * n + t, tl.sqrt_rn(tl.sum(acc, axis=0)))


@triton.jit
def _segment_sum(partial, row, n_chunks, lo, hi, SBLOCK: tl.constexpr):
    """Σ partial[row, c] over chunks [lo, hi), in chunk order (as `segment_norms` sums)."""
    acc = tl.zeros([SBLOCK], dtype=tl.float32)
    for off in range(lo, hi, SBLOCK):
        k = off + tl.arange(0, SBLOCK)
        acc += tl.load(partial + row * n_chunks + k, mask=k < hi, other=0.0)
    return tl.sum(acc, axis=0)


@triton.jit
def trust_scales(partial, first_chunk, out, n, n_chunks, factor1, factor2, lower, upper, K: tl.constexpr,
                 BOUNDED: tl.constexpr, CLIP: tl.constexpr, SBLOCK: tl.constexpr):
    """The norms and the trust ratios in one launch (grid (n,)): with ‖w‖ from partial row 0 and
    ‖r_k‖ from row k (k = 1..K), out[k-1, t] = factor_k · ratio_k, where ratio_k = φ(‖w‖)/‖r_k‖
    and 1 where either norm is 0; φ clamps to [lower, upper] when BOUNDED; CLIP caps the ratio at
    1 (:func:`scaling_study.optim.functional.trust_ratio`, the same operations in float32)."""
    t = tl.program_id(0)
    lo = tl.load(first_chunk + t)
    hi = tl.load(first_chunk + t + 1)
    w = tl.sqrt_rn(_segment_sum(partial, 0, n_chunks, lo, hi, SBLOCK))
    w_scaled = w
    if BOUNDED:
        w_scaled = tl.minimum(tl.maximum(w, lower), upper)
    for k in tl.static_range(1, K + 1):
        r = tl.sqrt_rn(_segment_sum(partial, k, n_chunks, lo, hi, SBLOCK))
        ratio = tl.where((w > 0) & (r > 0), tl.div_rn(w_scaled, tl.where(r > 0, r, 1.0)), 1.0)
        if CLIP:
            ratio = tl.minimum(ratio, 1.0)
        factor = factor1 if k == 1 else factor2
        tl.store(out + (k - 1) * n + t, ratio * factor)


@triton.jit
def _moments(m_p, v_p, i, mask, g, beta1, one_minus_beta1, beta2, one_minus_beta2):
    """Adam's moments of one block, stored; returns them as stored (rounded to the dtype)."""
    m = beta1 * tl.load(m_p + i, mask=mask, other=0.0).to(tl.float32) + one_minus_beta1 * g
    v = beta2 * tl.load(v_p + i, mask=mask, other=0.0).to(tl.float32) + one_minus_beta2 * g * g
    m = m.to(m_p.dtype.element_ty)
    v = v.to(v_p.dtype.element_ty)
    tl.store(m_p + i, m, mask=mask)
    tl.store(v_p + i, v, mask=mask)
    return m.to(tl.float32), v.to(tl.float32)


@triton.jit
def _lamb1_block(w_p, g_p, m_p, v_p, i, mask, s1, s2, beta1, one_minus_beta1, beta2,
                 one_minus_beta2, eps, wd):
    w = tl.load(w_p + i, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_p + i, mask=mask, other=0.0).to(tl.float32)
    m, v = _moments(m_p, v_p, i, mask, g, beta1, one_minus_beta1, beta2, one_minus_beta2)
    r = tl.div_rn(m * s1, tl.sqrt_rn(v) * s2 + eps) + wd * w
    return w * w, tl.where(mask, r * r, 0.0)


@triton.jit
def lamb_phase1(ptrs, n, chunk_tensor, chunk_start, numel, c1, c2, beta1, one_minus_beta1,
                beta2, one_minus_beta2, eps, wd, partial, n_chunks, DTYPE: tl.constexpr,
                CHUNK: tl.constexpr, BLOCK: tl.constexpr, ALIGNED: tl.constexpr):
    """Moments; partial[0, chunk] = Σ w², partial[1, chunk] = Σ r², r = m̂/(√v̂ + ε) + λw,
    with m̂ = m·c1 and √v̂ = √v·c2 (the group's bias corrections, host scalars)."""
    c, t, begin, full_end, end = _chunk(chunk_tensor, chunk_start, numel, CHUNK, BLOCK)
    w_p, g_p = _ptr(ptrs, 0, n, t, DTYPE, ALIGNED), _ptr(ptrs, 1, n, t, DTYPE, ALIGNED)
    m_p, v_p = _ptr(ptrs, 2, n, t, DTYPE, ALIGNED), _ptr(ptrs, 3, n, t, DTYPE, ALIGNED)
    s1, s2 = c1, c2
    acc_w = tl.zeros([BLOCK], dtype=tl.float32)
    acc_r = tl.zeros([BLOCK], dtype=tl.float32)
    for k in range(0, full_end - begin, BLOCK):
        i = begin + k + tl.arange(0, BLOCK)
        ww, rr = _lamb1_block(w_p, g_p, m_p, v_p, i, i < full_end, s1, s2, beta1,
                              one_minus_beta1, beta2, one_minus_beta2, eps, wd)
        acc_w += ww
        acc_r += rr
    if full_end < end:
        i = full_end + tl.arange(0, BLOCK)
        ww, rr = _lamb1_block(w_p, g_p, m_p, v_p, i, i < end, s1, s2, beta1, one_minus_beta1,
                              beta2, one_minus_beta2, eps, wd)
        acc_w += ww
        acc_r += rr
    tl.store(partial + c, tl.sum(acc_w, axis=0))
    tl.store(partial + n_chunks + c, tl.sum(acc_r, axis=0))


@triton.jit
def _lamb2_block(w_p, m_p, v_p, i, mask, s1, s2, eps, wd, s):
    w = tl.load(w_p + i, mask=mask, other=0.0).to(tl.float32)
    m = tl.load(m_p + i, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(v_p + i, mask=mask, other=0.0).to(tl.float32)
    r = tl.div_rn(m * s1, tl.sqrt_rn(v) * s2 + eps) + wd * w
    tl.store(w_p + i, (w - s * r).to(w_p.dtype.element_ty), mask=mask)


@triton.jit
def lamb_phase2(ptrs, n, chunk_tensor, chunk_start, numel, c1, c2, eps, wd, scale,
                DTYPE: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr,
                ALIGNED: tl.constexpr):
    """w ← w − scale[t]·r, r recomputed from the stored moments."""
    c, t, begin, full_end, end = _chunk(chunk_tensor, chunk_start, numel, CHUNK, BLOCK)
    w_p = _ptr(ptrs, 0, n, t, DTYPE, ALIGNED)
    m_p, v_p = _ptr(ptrs, 2, n, t, DTYPE, ALIGNED), _ptr(ptrs, 3, n, t, DTYPE, ALIGNED)
    s1, s2, s = c1, c2, tl.load(scale + t)
    for k in range(0, full_end - begin, BLOCK):
        i = begin + k + tl.arange(0, BLOCK)
        _lamb2_block(w_p, m_p, v_p, i, i < full_end, s1, s2, eps, wd, s)
    if full_end < end:
        i = full_end + tl.arange(0, BLOCK)
        _lamb2_block(w_p, m_p, v_p, i, i < end, s1, s2, eps, wd, s)


@triton.jit
def _lans1_block(w_p, g_p, m_p, v_p, i, mask, gs, s1, s2, beta1, one_minus_beta1, beta2,
                 one_minus_beta2, eps, wd):
    w = tl.load(w_p + i, mask=mask, other=0.0).to(tl.float32)
    gh = tl.load(g_p + i, mask=mask, other=0.0).to(tl.float32) * gs
    m, v = _moments(m_p, v_p, i, mask, gh, beta1, one_minus_beta1, beta2, one_minus_beta2)
    d = tl.sqrt_rn(v) * s2 + eps
    r1 = tl.div_rn(m * s1, d) + wd * w
    r2 = tl.div_rn(gh, d) + wd * w
    return w * w, tl.where(mask, r1 * r1, 0.0), tl.where(mask, r2 * r2, 0.0)


@triton.jit
def lans_phase1(ptrs, n, chunk_tensor, chunk_start, numel, ginv, c1, c2, beta1, one_minus_beta1,
                beta2, one_minus_beta2, eps, wd, partial, n_chunks, DTYPE: tl.constexpr,
                CHUNK: tl.constexpr, BLOCK: tl.constexpr, ALIGNED: tl.constexpr):
    """Moments of ĝ = g·ginv[t]; partial[0..2, chunk] = Σ w², Σ r₁², Σ r₂² with d = √v̂ + ε,
    r₁ = m̂/d + λw, r₂ = ĝ/d + λw."""
    c, t, begin, full_end, end = _chunk(chunk_tensor, chunk_start, numel, CHUNK, BLOCK)
    w_p, g_p = _ptr(ptrs, 0, n, t, DTYPE, ALIGNED), _ptr(ptrs, 1, n, t, DTYPE, ALIGNED)
    m_p, v_p = _ptr(ptrs, 2, n, t, DTYPE, ALIGNED), _ptr(ptrs, 3, n, t, DTYPE, ALIGNED)
    gs, s1, s2 = tl.load(ginv + t), c1, c2
    acc_w = tl.zeros([BLOCK], dtype=tl.float32)
    acc_1 = tl.zeros([BLOCK], dtype=tl.float32)
    acc_2 = tl.zeros([BLOCK], dtype=tl.float32)
    for k in range(0, full_end - begin, BLOCK):
        i = begin + k + tl.arange(0, BLOCK)
        ww, r1, r2 = _lans1_block(w_p, g_p, m_p, v_p, i, i < full_end, gs, s1, s2, beta1,
                                  one_minus_beta1, beta2, one_minus_beta2, eps, wd)
        acc_w += ww
        acc_1 += r1
        acc_2 += r2
    if full_end < end:
        i = full_end + tl.arange(0, BLOCK)
        ww, r1, r2 = _lans1_block(w_p, g_p, m_p, v_p, i, i < end, gs, s1, s2, beta1,
                                  one_minus_beta1, beta2, one_minus_beta2, eps, wd)
        acc_w += ww
        acc_1 += r1
        acc_2 += r2
    tl.store(partial + c, tl.sum(acc_w, axis=0))
    tl.store(partial + n_chunks + c, tl.sum(acc_1, axis=0))
    tl.store(partial + 2 * n_chunks + c, tl.sum(acc_2, axis=0))


@triton.jit
def _lans2_block(w_p, g_p, m_p, v_p, i, mask, gs, s1, s2, eps, wd, k1, k2):
    w = tl.load(w_p + i, mask=mask, other=0.0).to(tl.float32)
    gh = tl.load(g_p + i, mask=mask, other=0.0).to(tl.float32) * gs
    m = tl.load(m_p + i, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(v_p + i, mask=mask, other=0.0).to(tl.float32)
    d = tl.sqrt_rn(v) * s2 + eps
    r1 = tl.div_rn(m * s1, d) + wd * w
    r2 = tl.div_rn(gh, d) + wd * w
    tl.store(w_p + i, (w - (k1 * r1 + k2 * r2)).to(w_p.dtype.element_ty), mask=mask)


@triton.jit
def lans_phase2(ptrs, n, chunk_tensor, chunk_start, numel, ginv, c1, c2, eps, wd, scale1, scale2,
                DTYPE: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr,
                ALIGNED: tl.constexpr):
    """w ← w − (scale1[t]·r₁ + scale2[t]·r₂), both recomputed from the stored moments."""
    c, t, begin, full_end, end = _chunk(chunk_tensor, chunk_start, numel, CHUNK, BLOCK)
    w_p, g_p = _ptr(ptrs, 0, n, t, DTYPE, ALIGNED), _ptr(ptrs, 1, n, t, DTYPE, ALIGNED)
    m_p, v_p = _ptr(ptrs, 2, n, t, DTYPE, ALIGNED), _ptr(ptrs, 3, n, t, DTYPE, ALIGNED)
    gs, s1, s2 = tl.load(ginv + t), c1, c2
    k1, k2 = tl.load(scale1 + t), tl.load(scale2 + t)
    for k in range(0, full_end - begin, BLOCK):
        i = begin + k + tl.arange(0, BLOCK)
        _lans2_block(w_p, g_p, m_p, v_p, i, i < full_end, gs, s1, s2, eps, wd, k1, k2)
    if full_end < end:
        i = full_end + tl.arange(0, BLOCK)
        _lans2_block(w_p, g_p, m_p, v_p, i, i < end, gs, s1, s2, eps, wd, k1, k2)


@triton.jit
def _lars_block(w_p, g_p, b_p, i, mask, momentum, wd, s):
    w = tl.load(w_p + i, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_p + i, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_p + i, mask=mask, other=0.0).to(tl.float32)
    buf = (momentum * b + s * (g + wd * w)).to(b_p.dtype.element_ty)
    tl.store(b_p + i, buf, mask=mask)
    tl.store(w_p + i, (w - buf.to(tl.float32)).to(w_p.dtype.element_ty), mask=mask)


@triton.jit
def lars_apply(ptrs, n, chunk_tensor, chunk_start, numel, momentum, wd, scale,
               DTYPE: tl.constexpr, CHUNK: tl.constexpr, BLOCK: tl.constexpr,
               ALIGNED: tl.constexpr):
    """buf ← momentum·buf + scale[t]·(g + λw);  w ← w − buf (buf as stored)."""
    c, t, begin, full_end, end = _chunk(chunk_tensor, chunk_start, numel, CHUNK, BLOCK)
    w_p, g_p = _ptr(ptrs, 0, n, t, DTYPE, ALIGNED), _ptr(ptrs, 1, n, t, DTYPE, ALIGNED)
    b_p = _ptr(ptrs, 2, n, t, DTYPE, ALIGNED)
    s = tl.load(scale + t)
    for k in range(0, full_end - begin, BLOCK):
        i = begin + k + tl.arange(0, BLOCK)
        _lars_block(w_p, g_p, b_p, i, i < full_end, momentum, wd, s)
    if full_end < end:
        i = full_end + tl.arange(0, BLOCK)
        _lars_block(w_p, g_p, b_p, i, i < end, momentum, wd, s)
