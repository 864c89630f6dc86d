"""Checks that need the components themselves: the optimizer and the schedule are built once,
on the driver, from the job's names and arguments, so a typo fails before Ray starts."""
from __future__ import annotations

from scaling_study.config.job import Job
from scaling_study.errors import ConfigError


def check_components(job: Job, source: str | None = None) -> None:
    """Raise ConfigError naming the key when the optimizer or schedule cannot be built."""
    import torch

    from scaling_study.optim import build_optimizer, build_schedule, resolve_optimizer

    o = job.optimizer
    try:
        resolve_optimizer(o.name)
    except ValueError as exc:
        raise ConfigError("optimizer.name", str(exc), source) from None
    probe = [{"params": [torch.nn.Parameter(torch.zeros(2))], "weight_decay": o.weight_decay}]
    try:
        build_optimizer(o.name, probe, lr=o.lr, **o.args)
    except (TypeError, ValueError) as exc:
        raise ConfigError("optimizer.args", str(exc), source) from None
    for phase in job.phases():
        try:
            build_schedule(job.schedule.name, phase.steps or 1000, warmup=phase.warmup_arg, **job.schedule.args)
        except (TypeError, ValueError) as exc:
            key = "schedule.args" if "keyword" in str(exc) or "argument" in str(exc) else "schedule.warmup"
            raise ConfigError(key, str(exc), source) from None
