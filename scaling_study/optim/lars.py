"""LARS: SGD with momentum and a layer-wise local learning rate."""
from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from torch.optim.optimizer import required

from scaling_study.optim.base import Bucket, LayerwiseOptimizer, check_eps, require


class Lars(LayerwiseOptimizer):
    """LARS (You, Gitman, Ginsburg 2017).

    Per tensor w with gradient g: local = trust_coefficient·‖w‖/(‖g‖ + λ‖w‖ + eps), and 1 where
    ‖w‖ = 0 or ‖g‖ = 0; buffer ← momentum·buffer + η·local·(g + λw); w ← w − buffer (the
    buffer starts at zero). As for LAMB, a group with ``weight_decay == 0`` is not adapted
    (local = 1, plain momentum SGD) unless ``always_adapt=True``.

    Args:
        params: parameters or parameter groups.
        lr: global learning rate η (>= 0); required, here or in every group (as torch's SGD
            used to).
        momentum: μ in [0, 1).
        weight_decay: λ (>= 0).
        trust_coefficient: the paper's η in the local LR (> 0); 0.001 in the paper.
        eps: added to the local LR's denominator (>= 0; 0 as in the paper).
        always_adapt: apply the local LR in groups with ``weight_decay == 0`` too.
        impl: ``"fused"``: the fused multi-tensor kernels of the parameters' device (C++ on
            the CPU, Triton on CUDA; contiguous float32/bfloat16); ``"foreach"``: torch's
            foreach kernels; ``"auto"``: fused where they apply, else foreach.

    References: You, Gitman, Ginsburg 2017, "Large Batch Training of Convolutional Networks",
    Algorithm 1.
    """

    state_names = ("momentum_buffer",)

    def __init__(self, params: Iterable[Any], lr: float = required, momentum: float = 0.9,
                 weight_decay: float = 0.0, trust_coefficient: float = 0.001, eps: float = 0.0,
                 *, always_adapt: bool = False, impl: str = "auto"):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, eps=eps, always_adapt=always_adapt,
                        impl=impl)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        momentum, tc = group["momentum"], group["trust_coefficient"]
        require(isinstance(momentum, (int, float)) and 0 <= momentum < 1, "momentum", momentum,
                "a number in [0, 1)")
        require(isinstance(tc, (int, float)) and tc > 0, "trust_coefficient", tc,
                "a number > 0")
        check_eps(group["eps"], allow_zero=True)

    def _update(self, group: dict[str, Any], bucket: Bucket, ops: ModuleType) -> None:
        ops.lars_update(bucket.params, bucket.grads, bucket.states["momentum_buffer"],
                        lr=group["lr"], momentum=group["momentum"], weight_decay=group["weight_decay"],
                        trust_coefficient=group["trust_coefficient"], eps=group["eps"],
                        adapt=group["weight_decay"] != 0 or group["always_adapt"])
