"""LANS: LAMB with per-tensor gradient normalisation and a Nesterov-style two-term update."""
from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from scaling_study.optim.base import Bucket, LayerwiseOptimizer, check_betas, check_eps


class Lans(LayerwiseOptimizer):
    """LANS, as the authors' fused reference (GluonNLP/MXNet ``multi_lans``).

    Per tensor w with gradient g at step t: ĝ = g/‖g‖ (g as is where ‖g‖ = 0); Adam moments on
    ĝ with bias correction; d = √v̂ + ε; r₁ = m̂/d + λw, r₂ = ĝ/d + λw;
    w ← w − η·(β₁·‖w‖/‖r₁‖·r₁ + (1−β₁)·‖w‖/‖r₂‖·r₂), both terms from the pre-update w, each
    ratio 1 where a norm is 0. Every tensor is adapted, in every group (as in the reference);
    groups differ only in their hyperparameters (e.g. ``weight_decay=0`` for bias/LayerNorm).

    Args:
        params: parameters or parameter groups.
        lr: learning rate η (>= 0).
        betas: (β₁, β₂), each in [0, 1).
        eps: ε added to √v̂ (> 0).
        weight_decay: λ (>= 0), added to both update terms.
        bias_correction: divide the moments by (1 − βᵗ) (the reference does).
        impl: ``"fused"``: the fused multi-tensor kernels of the parameters' device (C++ on
            the CPU, Triton on CUDA; contiguous float32/bfloat16); ``"foreach"``: torch's
            foreach kernels; ``"auto"``: fused where they apply, else foreach.

    References: Zheng et al. 2020, "Accelerated Large Batch Optimization of BERT Pretraining in
    54 minutes", Algorithm 1.
    """

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, *, bias_correction: bool = True,
                 impl: str = "auto"):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        bias_correction=bias_correction, impl=impl)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        check_betas(group["betas"])
        check_eps(group["eps"])

    def _update(self, group: dict[str, Any], bucket: Bucket, ops: ModuleType) -> None:
        beta1, beta2 = group["betas"]
        ops.lans_update(bucket.params, bucket.grads, bucket.states["exp_avg"],
                        bucket.states["exp_avg_sq"], bucket.step, lr=group["lr"], beta1=beta1,
                        beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                        bias_correction=group["bias_correction"])
