"""LR scaling rules: square root (LAMB) and linear (Goyal et al.) from a reference (lr0, batch0)."""
from __future__ import annotations

import pytest

from scaling_study.optim import LR_RULES, scale_lr


@pytest.mark.parametrize("rule, batch, want", [
    ("sqrt", 256, 1e-3), ("sqrt", 1024, 2e-3), ("sqrt", 64, 5e-4), ("sqrt", 65536, 16e-3),
    ("linear", 256, 1e-3), ("linear", 1024, 4e-3), ("linear", 128, 5e-4),
    ("none", 8192, 1e-3),
])
def test_rules(rule, batch, want):
    assert scale_lr(1e-3, 256, batch, rule) == pytest.approx(want, rel=1e-12)


def test_lamb_paper_sqrt_scaling():
    # LAMB (You et al. 2019, Table 4): 5/(2^3 * 10^3) at batch 512 scaled by sqrt to 32K
    assert scale_lr(5 / (2**3 * 1e3), 512, 32768, "sqrt") == pytest.approx(5 / (2**0 * 1e3))


@pytest.mark.parametrize("kwargs, message", [
    (dict(rule="cubic"), "rule='cubic' is invalid: expected one of sqrt, linear, none"),
    (dict(lr0=-1.0), "lr0=-1.0 is invalid: expected a number >= 0"),
    (dict(batch0=0), "batch0=0 is invalid: expected an int >= 1"),
    (dict(batch=2.5), "batch=2.5 is invalid: expected an int >= 1"),
])
def test_bad_arguments(kwargs, message):
    args = dict(lr0=1e-3, batch0=256, batch=512, rule="sqrt") | kwargs
    with pytest.raises(ValueError) as err:
        scale_lr(**args)
    assert message in str(err.value)
    assert set(LR_RULES) == {"sqrt", "linear", "none"}
