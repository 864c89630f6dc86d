"""Large-batch optimizers (LAMB, LANS, LARS), the optimizer registry, parameter groups, LR
schedules and LR scaling rules.

Quick use::

    from scaling_study.optim import build_optimizer, bert_param_groups, build_schedule
    opt = build_optimizer("lamb", bert_param_groups(model, weight_decay=0.01), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, build_schedule("poly", 1000, warmup=0.1))
"""
from scaling_study.optim.groups import NO_DECAY, bert_param_groups, matches
from scaling_study.optim.lamb import Lamb
from scaling_study.optim.lans import Lans
from scaling_study.optim.lars import Lars
from scaling_study.optim.registry import OPTIMIZERS, RAdamW, build_optimizer, resolve_optimizer
from scaling_study.optim.scaling import LR_RULES, scale_lr
from scaling_study.optim.schedules import SCHEDULES, build_schedule, phased_schedule

__all__ = [
    "Lamb", "Lans", "Lars", "RAdamW", "OPTIMIZERS", "build_optimizer", "resolve_optimizer",
    "bert_param_groups", "matches", "NO_DECAY", "SCHEDULES", "build_schedule", "phased_schedule",
    "LR_RULES", "scale_lr",
]
