"""What LAMB, LANS and LARS share: argument checks, lazy state, and the per-step dispatch.

A step walks the parameter groups; within a group it takes the parameters that have a gradient,
buckets them by (device, dtype), and hands each bucket to the subclass's ``_update`` as lists of
tensors, together with the module that updates them, as the group's ``impl`` says: the fused
kernels of the bucket's device (:data:`FUSED`: C++ on the CPU, Triton on CUDA) or the portable
multi-tensor math (:mod:`scaling_study.optim.functional`). All three modules offer the same
``lamb_update``, ``lans_update`` and ``lars_update``. State: the subclass's ``state_names``
buffers per parameter, each shaped and typed like the parameter, and one step counter per
parameter group, ``group["step"]`` (a Python int, as NVIDIA apex's FusedLAMB keeps it): the bias
corrections are then two host scalars per group, and a step reads nothing back from the device
however its checkpoint was loaded. A parameter whose first gradient arrives late takes its group's
count. ``state_dict`` and ``load_state_dict`` are torch's own (the counter travels with the group);
checkpoints that kept a ``step`` per parameter load too.

Whether a bucket's tensors suit the fused kernels (``supports``) is decided once per parameter
set, not every step: the parameters and their state keep their layout; only the gradients, which
may be new tensors each step, are checked again.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from scaling_study.optim import _native, _triton
from scaling_study.optim import functional as F

IMPLS = ("auto", "fused", "foreach")
# device type -> its fused kernels: ``supports(tensors)``, ``available()`` and the three updates
FUSED: dict[str, ModuleType] = {"cpu": _native, "cuda": _triton}


def require(ok: bool, name: str, value: Any, valid: str) -> None:
    """Raise ``ValueError`` naming the argument, its value and what would be valid."""
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: expected {valid}")


def check_kwargs(owner: str, fn: Callable[..., Any], kwargs: dict[str, Any],
                 skip: tuple[str, ...] = ("self", "params")) -> None:
    """Raise ``ValueError`` for a keyword that ``fn`` does not accept, listing the ones it does."""
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    accepted = [n for n, p in sig.parameters.items()
                if n not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in kwargs:
        if key not in accepted:
            raise ValueError(f"{owner}: unknown argument {key!r}; accepted: {', '.join(accepted)}")


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_lr(lr: Any) -> None:
    require(_is_real(lr) and lr >= 0, "lr", lr, "a number >= 0")


def check_weight_decay(weight_decay: Any) -> None:
    require(_is_real(weight_decay) and weight_decay >= 0, "weight_decay", weight_decay,
            "a number >= 0")


def check_betas(betas: Any) -> None:
    ok = isinstance(betas, (tuple, list)) and len(betas) == 2
    require(ok and all(_is_real(b) and 0 <= b < 1 for b in betas), "betas", betas,
            "a pair (beta1, beta2), each in [0, 1)")


def check_eps(eps: Any, *, allow_zero: bool = False) -> None:
    if allow_zero:
        require(_is_real(eps) and eps >= 0, "eps", eps, "a number >= 0")
    else:
        require(_is_real(eps) and eps > 0, "eps", eps, "a number > 0")


def check_impl(impl: Any) -> None:
    require(impl in IMPLS, "impl", impl, f"one of {', '.join(IMPLS)}")


@dataclass
class Bucket:
    """Parameters of one group that have gradients, on one device and of one dtype."""
    params: list[Tensor]
    grads: list[Tensor]
    states: dict[str, list[Tensor]]
    step: int  # the group's step count, this step included


class LayerwiseOptimizer(torch.optim.Optimizer):
    """Base of the layer-wise adaptive optimizers; subclasses define ``state_names``,
    ``_check_group`` and ``_update``."""

    state_names: tuple[str, ...] = ()

    def __init__(self, params: Any, defaults: dict[str, Any]):
        self._fits: dict[tuple, bool] = {}  # (kernels, parameter ids) -> supports(params, state)
        super().__init__(params, defaults)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._fits.clear()  # the state tensors are new
        for group in self.param_groups:  # a checkpoint that counted steps per parameter
            old = [self.state[p].pop("step") for p in group["params"] if "step" in self.state[p]]
            if old and "step" not in group:
                group["step"] = int(max(float(t) for t in old))

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1])

    def _check_group(self, group: dict[str, Any]) -> None:
        """Raise ``ValueError`` for a bad hyperparameter in ``group`` (groups may override)."""
        check_lr(group["lr"])
        check_weight_decay(group["weight_decay"])
        check_impl(group["impl"])

    def _update(self, group: dict[str, Any], bucket: Bucket, ops: ModuleType) -> None:
        """Update ``bucket`` with ``ops`` (:mod:`~scaling_study.optim.functional` or fused)."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Take one step; ``closure``, if given, re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            buckets = self._buckets(group)
            if buckets:
                group["step"] = group.get("step", 0) + 1
            for bucket in buckets:
                self._update(group, bucket, self._ops(group["impl"], bucket))
        return loss

    def _ops(self, impl: str, bucket: Bucket) -> ModuleType:
        """The fused kernels of the bucket's device where ``impl`` allows and they apply, else
        the foreach math; ``impl='fused'`` raises where they do not apply."""
        if impl == "foreach":
            return F
        fused = FUSED.get(bucket.params[0].device.type)
        if fused is not None and fused.available() and self._fit(fused, bucket):
            return fused
        if impl == "fused":
            raise RuntimeError(
                f"{type(self).__name__}(impl='fused') needs contiguous float32/bfloat16 tensors, "
                "on the CPU with a C++ compiler or on CUDA with Triton; got "
                f"{bucket.params[0].dtype} on {bucket.params[0].device}. "
                "Use impl='auto' or 'foreach'.")
        return F

    def _fit(self, fused: ModuleType, bucket: Bucket) -> bool:
        """``fused.supports`` the bucket: its parameters and state checked once per parameter
        set, its gradients (maybe new tensors) every step."""
        key = (fused.__name__, *map(id, bucket.params))
        fits = self._fits.get(key)
        if fits is None:
            params_and_state = [*bucket.params, *(t for ts in bucket.states.values() for t in ts)]
            fits = self._fits[key] = fused.supports(params_and_state)
        return fits and fused.supports([bucket.params[0], *bucket.grads])

    def _buckets(self, group: dict[str, Any]) -> list[Bucket]:
        by_kind: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            by_kind.setdefault((p.device, p.dtype), []).append(p)
        buckets = []
        for params in by_kind.values():
            states = [self._state(p) for p in params]
            buckets.append(Bucket(params=params, grads=[p.grad for p in params],
                                  states={k: [s[k] for s in states] for k in self.state_names},
                                  step=group.get("step", 0) + 1))
        return buckets

    def _state(self, p: Tensor) -> dict[str, Tensor]:
        state = self.state[p]
        if not state:
            for name in self.state_names:
                state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state
