"""LAMB with the trust ratio forced to 1 is AdamW.

torch's AdamW (decoupled decay) does  w ← w·(1 − ηλ);  w ← w − η·m̂/(√v̂ + ε).
LAMB with ratio 1 does                 w ← w − η·(m̂/(√v̂ + ε) + λ·w).
Both are w − ηλ·w − η·m̂/(√v̂ + ε) with the same pre-update w, because the Adam direction does not
depend on w: the two agree exactly in exact arithmetic (not only to first order in ηλ), and in
float32 up to a few roundings per step. The ratio is forced to 1 by ``adapt=False`` (decayed
group) or by the group convention (``weight_decay=0`` and no ``always_adapt``: plain Adam).
"""
from __future__ import annotations

import pytest
import torch

from scaling_study.optim import Lamb, _native

# The fused kernels need a C++ compiler; without one the optimizers fall back to foreach.
IMPLS = ["foreach", pytest.param("fused", marks=pytest.mark.skipif(
    _native.compiler() is None, reason="no C++ compiler for the fused CPU kernels"))]

SHAPES = [(64, 32), (1000,), (7,)]


def _train(make_opt, steps: int = 10) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]
    opt = make_opt(params)
    for step in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * (0.1 + step)
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("weight_decay, lamb_options", [(0.1, dict(adapt=False)), (0.0, {})])
def test_lamb_without_adaptation_is_adamw(impl, weight_decay, lamb_options):
    hyper = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=weight_decay)
    lamb = _train(lambda ps: Lamb(ps, impl=impl, **lamb_options, **hyper))
    adamw = _train(lambda ps: torch.optim.AdamW(ps, foreach=False, **hyper))
    for got, want in zip(lamb, adamw):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_adaptation_changes_the_step():
    """Guard for the test above: with adaptation on, LAMB is not AdamW."""
    hyper = dict(lr=0.01, weight_decay=0.1)
    lamb = _train(lambda ps: Lamb(ps, **hyper))
    adamw = _train(lambda ps: torch.optim.AdamW(ps, **hyper))
    assert not torch.allclose(lamb[0], adamw[0], rtol=1e-3)
