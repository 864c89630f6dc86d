"""Optimizers by name: ours, torch's AdamW and RAdamW, or a user's class by import path."""
from __future__ import annotations

import importlib
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import torch

from scaling_study.optim.base import check_kwargs
from scaling_study.optim.lamb import Lamb
from scaling_study.optim.lans import Lans
from scaling_study.optim.lars import Lars
from scaling_study.optim.names import OPTIMIZER_NAMES, check_registry


class RAdamW(torch.optim.RAdam):
    """RAdam with decoupled weight decay (RAdamW), torch's implementation.

    References: Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond"
    (rectification when ρₜ > 5); Loshchilov & Hutter 2019 for the decoupled decay.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         decoupled_weight_decay=True, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable)


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "lamb": Lamb,
    "lans": Lans,
    "lars": Lars,
    "adamw": torch.optim.AdamW,
    "radam": RAdamW,
}
check_registry("optimizer", OPTIMIZERS, OPTIMIZER_NAMES)


def resolve_optimizer(name: str) -> type[torch.optim.Optimizer]:
    """Return the class for a registry key (any case) or an import path.

    An import path is ``"package.module:Class"`` or ``"package.module.Class"`` and must name a
    ``torch.optim.Optimizer`` subclass. Raises ``ValueError`` listing the valid names otherwise.
    """
    valid = f"one of {', '.join(OPTIMIZERS)}, or an import path 'package.module:Class'"
    if not isinstance(name, str) or not name:
        raise ValueError(f"optimizer name {name!r} is invalid: expected {valid}")
    if name.lower() in OPTIMIZERS:
        return OPTIMIZERS[name.lower()]
    module_name, sep, attr = name.rpartition(":") if ":" in name else name.rpartition(".")
    if not sep or not module_name:
        raise ValueError(f"unknown optimizer {name!r}: expected {valid}")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import optimizer {name!r} ({exc}): expected {valid}") from exc
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"{name!r} is {cls!r}, not a torch.optim.Optimizer subclass")
    return cls


def _tensors(params: list[Any]) -> list[torch.Tensor]:
    """The tensors in a torch-style params argument (tensors, (name, tensor) pairs or groups)."""
    out: list[torch.Tensor] = []
    for item in params:
        if isinstance(item, dict):
            out += _tensors(list(item["params"]))
        else:
            out.append(item[1] if isinstance(item, tuple) else item)
    return out


@lru_cache(maxsize=None)
def _fused_adamw_runs(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether torch's fused AdamW steps a tensor of this device and dtype.

    torch has no public list of the devices its fused kernels support and checks them only at the
    first step, so take one step on a one-element tensor (once per device and dtype).
    """
    try:
        p = torch.zeros(1, device=device, dtype=dtype, requires_grad=True)
        p.grad = torch.zeros_like(p)
        torch.optim.AdamW([p], fused=True).step()
    except RuntimeError:  # NotImplementedError included: a dtype without a kernel
        return False
    return True


def _fast_adamw_kwargs(tensors: list[torch.Tensor]) -> dict[str, bool]:
    """``fused=True`` where torch has a fused AdamW for every tensor, else ``foreach=True``."""
    kinds = {(t.device, t.dtype) for t in tensors}
    if kinds and all(_fused_adamw_runs(device, dtype) for device, dtype in kinds):
        return {"fused": True}
    return {"foreach": True}


def build_optimizer(name: str, params: Iterable[Any], **kwargs: Any) -> torch.optim.Optimizer:
    """Build an optimizer by registry key or import path with the given hyperparameters.

    For ``adamw`` with neither ``fused`` nor ``foreach`` given, picks torch's fused kernel where
    it supports every parameter's device and dtype (CPU and CUDA included), else foreach; for
    ``radam`` picks foreach unless told otherwise.

    Raises:
        ValueError: unknown name or keyword argument (the message lists the valid ones), or a
            hyperparameter the optimizer rejects.
    """
    cls = resolve_optimizer(name)
    check_kwargs(f"optimizer {name!r}", cls.__init__, kwargs)
    params = list(params)
    if cls is torch.optim.AdamW and not {"fused", "foreach", "differentiable"} & kwargs.keys():
        kwargs = {**_fast_adamw_kwargs(_tensors(params)), **kwargs}
    elif cls is RAdamW and "foreach" not in kwargs:
        kwargs = {"foreach": True, **kwargs}
    return cls(params, **kwargs)
