"""Every optimizer minimises a parabola; the layer-wise ones minimise Rosenbrock's function.

The layer-wise optimizers take steps of about η·‖w‖ per tensor, so each run decays the LR with
the cosine schedule to settle at the minimum, and Rosenbrock starts at (2, 2): from the classic
(−1.5, 2) the valley runs through the origin, where ‖w‖ — and with it every step — vanishes.
"""
from __future__ import annotations

import pytest
import torch

from scaling_study.optim import build_optimizer, build_schedule

TARGET = torch.tensor([1.0, -2.0, 3.0])
CURVATURE = torch.tensor([1.0, 10.0, 0.1])


def parabola(w: torch.Tensor) -> torch.Tensor:
    return (CURVATURE * (w - TARGET) ** 2).sum()


def rosenbrock(w: torch.Tensor) -> torch.Tensor:
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


def minimise(name: str, loss_fn, start: list[float], steps: int, **kwargs) -> torch.Tensor:
    w = torch.nn.Parameter(torch.tensor(start))
    opt = build_optimizer(name, [w], **kwargs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, build_schedule("cosine", steps))
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(w).backward()
        opt.step()
        sched.step()
    return w.detach()


ADAPTIVE = {  # each in its layer-wise configuration (a single tensor, weight_decay 0)
    "lamb": dict(lr=0.02, always_adapt=True),
    "lans": dict(lr=0.02),
    "lars": dict(lr=0.02, always_adapt=True, trust_coefficient=1.0),
}


@pytest.mark.parametrize("name, kwargs", [*ADAPTIVE.items(),
                                          ("adamw", dict(lr=0.1, weight_decay=0.0)),
                                          ("radam", dict(lr=0.3))])
def test_minimises_a_parabola(name, kwargs):
    w = minimise(name, parabola, [0.0, 0.0, 0.0], steps=500, **kwargs)  # starts at ‖w‖ = 0
    torch.testing.assert_close(w, TARGET, atol=2e-2, rtol=0)


@pytest.mark.parametrize("name", sorted(ADAPTIVE))
def test_minimises_rosenbrock(name):
    w = minimise(name, rosenbrock, [2.0, 2.0], steps=1000, **ADAPTIVE[name])
    torch.testing.assert_close(w, torch.ones(2), atol=2e-2, rtol=0)
    assert rosenbrock(w) < 1e-3
