"""The registered names of optimizers and LR schedules, without importing torch.

A job's `optimizer.name` and `schedule.name` are checked against these when the job is loaded
(before torch is imported, let alone Ray started). The registries themselves
(`registry.OPTIMIZERS`, `schedules.SCHEDULES`) map each of these names to its implementation and
refuse, on import, to hold any other (`check_registry`).
"""
from __future__ import annotations

from collections.abc import Iterable

OPTIMIZER_NAMES = ("lamb", "lans", "lars", "adamw", "radam")
SCHEDULE_NAMES = ("poly", "lans", "cosine", "constant")


def check_registry(what: str, registry: Iterable[str], names: tuple[str, ...]) -> None:
    """Raise RuntimeError unless `registry` holds exactly `names` (in order): the config and the
    registry must never disagree on what is valid."""
    if tuple(registry) != names:
        raise RuntimeError(f"the {what} registry holds {tuple(registry)} but scaling_study.optim.names "
                           f"lists {names}; change both together")
