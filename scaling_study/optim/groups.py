"""Parameter groups by name pattern: BERT's "no weight decay on bias and LayerNorm" split."""
from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch-free at import: the job config reads NO_DECAY as its default
    from torch import nn

NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias")
"""BERT's parameters without weight decay (and, with LAMB/LARS, without layer adaptation);
the default of a job's `optimizer.no_decay`."""
_GLOB_CHARS = frozenset("*?[")


def matches(name: str, pattern: str) -> bool:
    """Whether a parameter name matches a pattern.

    The rule: a pattern with a glob character (``*``, ``?`` or ``[``) is an ``fnmatch`` glob
    matched, case-sensitively, against the whole dotted name (``"*.LayerNorm.*"``); any other
    pattern matches where it occurs as a substring of the name (``"bias"`` matches
    ``encoder.layer.0.output.dense.bias``) — the rule of the BERT reference scripts.
    """
    if _GLOB_CHARS & set(pattern):
        return fnmatchcase(name, pattern)
    return pattern in name


def bert_param_groups(model: nn.Module, weight_decay: float,
                      no_decay: Sequence[str] = NO_DECAY, **group_options: Any
                      ) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into a decayed group and a ``weight_decay=0`` group.

    A parameter goes to the no-decay group when its name (from ``model.named_parameters()``,
    tied weights once) matches any pattern of ``no_decay`` (see :func:`matches`); every other
    trainable parameter goes to the decay group. Frozen parameters (``requires_grad=False``) are
    left out; every trainable parameter lands in exactly one group; an empty group is dropped.
    With LAMB or LARS the ``weight_decay=0`` group also skips layer adaptation (their default
    group convention), as in NVIDIA's and Google's BERT recipes.

    Args:
        model: the module whose parameters to split.
        weight_decay: the decay group's weight decay (>= 0).
        no_decay: name patterns of the parameters that get no weight decay.
        **group_options: extra options copied into both groups (e.g. ``lr``).

    Raises:
        ValueError: a pattern matches no parameter name at all (likely a typo), or a bad
            ``weight_decay``.
    """
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise ValueError(f"weight_decay={weight_decay!r} is invalid: expected a number >= 0")
    if isinstance(no_decay, str):
        no_decay = (no_decay,)
    named = list(model.named_parameters())
    names = [n for n, _ in named]
    for pattern in no_decay:
        if not any(matches(n, pattern) for n in names):
            raise ValueError(f"no_decay pattern {pattern!r} matches no parameter of "
                             f"{type(model).__name__} (names look like {names[:3]})")
    decay, plain = [], []
    for name, p in named:
        if p.requires_grad:
            (plain if any(matches(name, pat) for pat in no_decay) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, **group_options},
              {"params": plain, "weight_decay": 0.0, **group_options}]
    return [g for g in groups if g["params"]]
