"""Learning-rate scaling rules: move the batch size of a sweep and keep the LR rule."""
from __future__ import annotations

import math
from collections.abc import Callable

LR_RULES: dict[str, Callable[[float], float]] = {
    # lr ∝ √batch: LAMB (You et al. 2019, Section 4), keeps the update's noise scale.
    "sqrt": math.sqrt,
    # lr ∝ batch: Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour".
    "linear": lambda ratio: ratio,
    # lr fixed whatever the batch.
    "none": lambda ratio: 1.0,
}


def scale_lr(lr0: float, batch0: int, batch: int, rule: str) -> float:
    """Return the LR for global batch ``batch`` given the reference ``(lr0, batch0)``.

    ``rule`` is ``"sqrt"`` (lr0·√(batch/batch0), LAMB), ``"linear"`` (lr0·batch/batch0, Goyal
    et al.) or ``"none"`` (lr0).

    Raises:
        ValueError: unknown rule (listing the valid ones), lr0 < 0, or a batch size < 1.
    """
    if rule not in LR_RULES:
        raise ValueError(f"rule={rule!r} is invalid: expected one of {', '.join(LR_RULES)}")
    if isinstance(lr0, bool) or not isinstance(lr0, (int, float)) or lr0 < 0:
        raise ValueError(f"lr0={lr0!r} is invalid: expected a number >= 0")
    for name, b in (("batch0", batch0), ("batch", batch)):
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"{name}={b!r} is invalid: expected an int >= 1")
    return lr0 * LR_RULES[rule](batch / batch0)
