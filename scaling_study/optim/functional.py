"""Pure multi-tensor math of LAMB, LANS and LARS: the portable path and the readable reference.

Every function takes lists of tensors (one entry per parameter, all on one device and of one
dtype) and updates parameters and state in place with ``torch._foreach_*`` kernels: no Python loop
over parameters, no host sync (norms stay on the device as a stacked 1-D tensor and reach the
update as 0-dim tensors). Where they apply, the optimizers use fused kernels instead, which
compute the same formulas in 2-3 passes over memory: :mod:`scaling_study.optim._native` on the
CPU, :mod:`scaling_study.optim._triton` on CUDA (see those modules for why); tests check that
they agree with these functions. On CUDA the foreach kernels here are multi-tensor launches only
for lists of same-shaped tensors: scaling each tensor by its own 0-dim factor launches one kernel
per tensor.

The pieces, in the papers' terms (w: parameter, g: gradient, t: step, λ: weight decay):

* :func:`adam_moments_` — m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g².
* :func:`adam_direction` — m̂ / (√v̂ + ε) with m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ).
* :func:`trust_ratio` — ‖w‖/‖r‖, 1 where either norm is 0.
* :func:`lamb_update`, :func:`lans_update`, :func:`lars_update` — the three optimizers' steps.

The step count arrives as one Python number per parameter group (the optimizers keep one
counter per group, as NVIDIA apex's FusedLAMB does), so the bias corrections are two host scalars
per call: nothing is read back from a device, and scaling by them is one multi-tensor launch.
"""
from __future__ import annotations

import math
import torch
from torch import Tensor

TensorList = list[Tensor]


def bias_corrections(step: float, beta1: float, beta2: float,
                     enabled: bool = True) -> tuple[float, float]:
    """Return Adam's bias corrections ``(1 − β₁ᵗ, 1 − β₂ᵗ)`` at step ``t``, or ones if disabled."""
    if not enabled:
        return 1.0, 1.0
    return 1.0 - beta1**step, 1.0 - beta2**step


def inverse_bias_corrections(step: float, beta1: float, beta2: float,
                             enabled: bool = True) -> tuple[float, float]:
    """Return the factors ``1/(1 − β₁ᵗ)`` and ``1/√(1 − β₂ᵗ)``, the form in which the fused
    kernels take them: m̂/(√v̂ + ε) = (m·c₁)/(√v·c₂ + ε)."""
    bc1, bc2 = bias_corrections(step, beta1, beta2, enabled)
    return 1.0 / bc1, 1.0 / math.sqrt(bc2)


def norms(tensors: TensorList) -> Tensor:
    """Return the L2 norms of ``tensors`` as one 1-D tensor, accumulated in at least float32."""
    dtype = torch.promote_types(tensors[0].dtype, torch.float32)
    return torch.stack(torch._foreach_norm(tensors, 2, dtype=dtype))


def trust_ratio(w_norm: Tensor, u_norm: Tensor, *, clip: bool = False,
                weight_norm_bounds: tuple[float, float] | None = None) -> Tensor:
    """Return the layer-wise trust ratio φ(‖w‖)/‖u‖, and 1 where ‖w‖ = 0 or ‖u‖ = 0.

    Args:
        w_norm, u_norm: stacked per-tensor norms of the weights and of the update.
        clip: cap the ratio at 1 (timm's ``trust_clip``).
        weight_norm_bounds: ``(lower, upper)`` clamp of ‖w‖ — the paper's φ; ``None`` for the
            identity, as in the authors' TensorFlow code.

    References: You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in
    76 minutes", Algorithm 2 (LAMB).
    """
    w_scaled = w_norm if weight_norm_bounds is None else w_norm.clamp(*weight_norm_bounds)
    ratio = torch.where((w_norm > 0) & (u_norm > 0), w_scaled / u_norm, torch.ones_like(w_norm))
    return ratio.clamp(max=1.0) if clip else ratio


def adam_moments_(exp_avgs: TensorList, exp_avg_sqs: TensorList, grads: TensorList,
                  beta1: float, beta2: float) -> None:
    """Update Adam's first and second moments in place."""
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)


def adam_denominator(exp_avg_sqs: TensorList, bc2: float, eps: float) -> TensorList:
    """Return √v̂ + ε = √v / √(1 − β₂ᵗ) + ε (new tensors)."""
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, math.sqrt(bc2))
    torch._foreach_add_(denom, eps)
    return denom


def adam_direction(exp_avgs: TensorList, exp_avg_sqs: TensorList, bc1: float,
                   bc2: float, eps: float) -> TensorList:
    """Return Adam's direction m̂ / (√v̂ + ε) (new tensors)."""
    direction = torch._foreach_div(exp_avgs, adam_denominator(exp_avg_sqs, bc2, eps))
    torch._foreach_div_(direction, bc1)
    return direction


def _scale_(tensors: TensorList, factors: Tensor) -> None:
    """Multiply tensor i by the 0-dim tensor ``factors[i]`` in place (no host sync)."""
    torch._foreach_mul_(tensors, list(factors.to(tensors[0].dtype).unbind()))


def lamb_update(params: TensorList, grads: TensorList, exp_avgs: TensorList,
                exp_avg_sqs: TensorList, step: float, *, lr: float, beta1: float,
                beta2: float, eps: float, weight_decay: float, adapt: bool,
                bias_correction: bool = True, trust_clip: bool = False,
                weight_norm_bounds: tuple[float, float] | None = None) -> None:
    """One LAMB step: r = m̂/(√v̂+ε) + λw;  w ← w − η·ratio·r, ratio = 1 where not ``adapt``.

    References: You et al. 2019, Algorithm 2; the authors' TensorFlow Addons ``lamb.py``.
    """
    adam_moments_(exp_avgs, exp_avg_sqs, grads, beta1, beta2)
    bc1, bc2 = bias_corrections(step, beta1, beta2, bias_correction)
    update = adam_direction(exp_avgs, exp_avg_sqs, bc1, bc2, eps)
    if weight_decay != 0:
        torch._foreach_add_(update, params, alpha=weight_decay)
    if adapt:
        ratio = trust_ratio(norms(params), norms(update), clip=trust_clip,
                            weight_norm_bounds=weight_norm_bounds)
        _scale_(update, ratio)
    torch._foreach_add_(params, update, alpha=-lr)


def lans_update(params: TensorList, grads: TensorList, exp_avgs: TensorList,
                exp_avg_sqs: TensorList, step: float, *, lr: float, beta1: float,
                beta2: float, eps: float, weight_decay: float,
                bias_correction: bool = True) -> None:
    """One LANS step; every tensor is adapted.

    ĝ = g/‖g‖ (g where ‖g‖ = 0); moments on ĝ; d = √v̂ + ε; r₁ = m̂/d + λw, r₂ = ĝ/d + λw;
    w ← w − η(β₁·‖w‖/‖r₁‖·r₁ + (1−β₁)·‖w‖/‖r₂‖·r₂), both terms from the pre-update w.

    References: Zheng et al. 2020, "Accelerated Large Batch Optimization of BERT Pretraining in
    54 minutes", Algorithm 1; the authors' GluonNLP/MXNet ``multi_lans`` kernels.
    """
    g_norm = norms(grads)
    g_hat = torch._foreach_mul(grads, list(torch.where(g_norm > 0, 1.0 / g_norm, 1.0)
                                           .to(grads[0].dtype).unbind()))
    adam_moments_(exp_avgs, exp_avg_sqs, g_hat, beta1, beta2)
    bc1, bc2 = bias_corrections(step, beta1, beta2, bias_correction)
    denom = adam_denominator(exp_avg_sqs, bc2, eps)
    r1 = torch._foreach_div(exp_avgs, denom)
    torch._foreach_div_(r1, bc1)
    r2 = torch._foreach_div(g_hat, denom)
    if weight_decay != 0:
        torch._foreach_add_(r1, params, alpha=weight_decay)
        torch._foreach_add_(r2, params, alpha=weight_decay)
    w_norm = norms(params)
    _scale_(r1, beta1 * trust_ratio(w_norm, norms(r1)))
    _scale_(r2, (1.0 - beta1) * trust_ratio(w_norm, norms(r2)))
    torch._foreach_add_(r1, r2)
    torch._foreach_add_(params, r1, alpha=-lr)


def lars_local_lr(w_norm: Tensor, g_norm: Tensor, *, trust_coefficient: float,
                  weight_decay: float, eps: float) -> Tensor:
    """Return LARS's local LR  tc·‖w‖/(‖g‖ + λ‖w‖ + eps), and 1 where ‖w‖ = 0 or ‖g‖ = 0.

    References: You, Gitman, Ginsburg 2017, "Large Batch Training of Convolutional Networks".
    """
    local = trust_coefficient * w_norm / (g_norm + weight_decay * w_norm + eps)
    return torch.where((w_norm > 0) & (g_norm > 0), local, torch.ones_like(w_norm))


def lars_update(params: TensorList, grads: TensorList, momentum_buffers: TensorList, *,
                lr: float, momentum: float, weight_decay: float, trust_coefficient: float,
                eps: float, adapt: bool) -> None:
    """One LARS step: buf ← μ·buf + η·local·(g + λw);  w ← w − buf (local = 1 where not ``adapt``).

    References: You, Gitman, Ginsburg 2017, Algorithm 1.
    """
    if adapt:
        local = lars_local_lr(norms(params), norms(grads), trust_coefficient=trust_coefficient,
                              weight_decay=weight_decay, eps=eps)
        step = torch._foreach_mul(grads, list((lr * local).to(grads[0].dtype).unbind()))
        if weight_decay != 0:
            torch._foreach_addcmul_(step, params, list((lr * weight_decay * local)
                                                       .to(grads[0].dtype).unbind()))
    else:
        step = torch._foreach_mul(grads, lr)
        if weight_decay != 0:
            torch._foreach_add_(step, params, alpha=lr * weight_decay)
    torch._foreach_mul_(momentum_buffers, momentum)
    torch._foreach_add_(momentum_buffers, step)
    torch._foreach_sub_(params, momentum_buffers)
