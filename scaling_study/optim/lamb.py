"""LAMB: Adam moments, decoupled weight decay in the update, layer-wise trust ratio."""
from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from scaling_study.optim.base import (Bucket, LayerwiseOptimizer, check_betas, check_eps,
                                      require)


class Lamb(LayerwiseOptimizer):
    """LAMB, exactly as the authors' reference (TensorFlow Addons ``lamb.py``).

    Per tensor w with gradient g at step t: Adam moments with bias correction;
    r = m̂/(√v̂ + ε) + λ·w;  w ← w − η·(‖w‖/‖r‖)·r, the ratio being 1 where either norm is 0.

    Group convention of NVIDIA apex FusedLAMB and timm: a group whose ``weight_decay`` is 0 gets
    no layer adaptation (ratio 1, i.e. a plain Adam step) unless ``always_adapt=True`` — this is
    how BERT's bias and LayerNorm parameters skip both decay and adaptation (see
    :func:`scaling_study.optim.bert_param_groups`). All options below may also be set per group.

    Args:
        params: parameters or parameter groups.
        lr: learning rate η (>= 0).
        betas: (β₁, β₂), each in [0, 1).
        eps: ε added to √v̂ (> 0).
        weight_decay: λ (>= 0), added to the update (decoupled from the moments).
        bias_correction: divide the moments by (1 − βᵗ); off = torch-optimizer's default.
        always_adapt: apply the trust ratio in groups with ``weight_decay == 0`` too.
        adapt: ``False`` forces the ratio to 1 for every tensor: LAMB without layer adaptation,
            which is AdamW (an ablation; the equivalence is tested).
        trust_clip: cap the ratio at 1 (timm's option).
        weight_norm_bounds: ``(lower, upper)`` clamp of ‖w‖ in the ratio — the paper's φ; the
            reference code uses none (``None``).
        impl: ``"fused"``: the fused multi-tensor kernels of the parameters' device (C++ on
            the CPU, Triton on CUDA; contiguous float32/bfloat16); ``"foreach"``: torch's
            foreach kernels; ``"auto"``: fused where they apply, else foreach.

    References: You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in
    76 minutes" (ICLR 2020), Algorithm 2.
    """

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, *, bias_correction: bool = True,
                 always_adapt: bool = False, adapt: bool = True, trust_clip: bool = False,
                 weight_norm_bounds: tuple[float, float] | None = None, impl: str = "auto"):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        bias_correction=bias_correction, always_adapt=always_adapt, adapt=adapt,
                        trust_clip=trust_clip, weight_norm_bounds=weight_norm_bounds, impl=impl)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        check_betas(group["betas"])
        check_eps(group["eps"])
        bounds = group["weight_norm_bounds"]
        require(bounds is None or (len(bounds) == 2 and 0 <= bounds[0] <= bounds[1]),
                "weight_norm_bounds", bounds, "None or a pair (lower, upper), 0 <= lower <= upper")

    def _update(self, group: dict[str, Any], bucket: Bucket, ops: ModuleType) -> None:
        beta1, beta2 = group["betas"]
        adapt = group["adapt"] and (group["weight_decay"] != 0 or group["always_adapt"])
        ops.lamb_update(bucket.params, bucket.grads, bucket.states["exp_avg"],
                        bucket.states["exp_avg_sq"], bucket.step, lr=group["lr"], beta1=beta1,
                        beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                        adapt=adapt, bias_correction=group["bias_correction"],
                        trust_clip=group["trust_clip"], weight_norm_bounds=group["weight_norm_bounds"])
