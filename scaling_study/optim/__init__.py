"""Large-batch optimizers (LAMB, LANS, LARS), the optimizer registry, parameter groups, LR
schedules and LR scaling rules.

Quick use::

    from scaling_study.optim import build_optimizer, bert_param_groups, build_schedule
    opt = build_optimizer("lamb", bert_param_groups(model, weight_decay=0.01), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, build_schedule("poly", 1000, warmup=0.1))
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# name -> submodule. Loaded on first use (PEP 562): importing a light submodule of this package
# (the bench's argument parser, say) does not import torch.
_EXPORTS = {
    "NO_DECAY": "groups", "bert_param_groups": "groups", "matches": "groups",
    "Lamb": "lamb", "Lans": "lans", "Lars": "lars",
    "OPTIMIZERS": "registry", "RAdamW": "registry", "build_optimizer": "registry", "resolve_optimizer": "registry",
    "LR_RULES": "scaling", "scale_lr": "scaling",
    "SCHEDULES": "schedules", "build_schedule": "schedules", "phased_schedule": "schedules",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from scaling_study.optim.groups import NO_DECAY, bert_param_groups, matches
    from scaling_study.optim.lamb import Lamb
    from scaling_study.optim.lans import Lans
    from scaling_study.optim.lars import Lars
    from scaling_study.optim.registry import OPTIMIZERS, RAdamW, build_optimizer, resolve_optimizer
    from scaling_study.optim.scaling import LR_RULES, scale_lr
    from scaling_study.optim.schedules import SCHEDULES, build_schedule, phased_schedule


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
