"""LR schedules against tables of expected multipliers, warmup forms, phases and bad arguments."""
from __future__ import annotations

import math

import pytest
import torch

from scaling_study.optim import SCHEDULES, build_schedule, phased_schedule

# (name, total, warmup, kwargs, {step: multiplier}) — values worked out by hand from the formulas.
TABLES = [
    ("poly", 10, 0.2, {}, {0: 0.0, 1: 0.5, 2: 1.0, 4: 0.75, 6: 0.5, 10: 0.0, 12: 0.0}),
    ("poly", 10, 2, dict(power=2.0, end=0.1), {1: 0.5, 2: 1.0, 6: 0.9 * 0.25 + 0.1, 10: 0.1}),
    ("poly", 100, 0.0, dict(power=0.5), {0: 1.0, 75: 0.5, 99: 0.1, 100: 0.0}),
    # LANS: x < w: x/w; x < w + c: 1; else ((1 - x)/(1 - w - c))^degree
    ("lans", 100, 0.05, dict(constant=0.25), {0: 0.0, 1: 0.2, 4: 0.8, 5: 1.0, 29: 1.0, 30: 1.0,
                                              65: 0.5, 86: 0.2, 100: 0.0, 120: 0.0}),
    ("lans", 20, 0.1, dict(constant=4, degree=2.0), {1: 0.5, 2: 1.0, 5: 1.0, 6: 1.0,
                                                      13: 0.25, 20: 0.0}),
    ("cosine", 10, 0.2, {}, {0: 0.0, 1: 0.5, 2: 1.0, 6: 0.5, 10: 0.0, 11: 0.0}),
    ("cosine", 9, 0, dict(floor=0.2), {0: 1.0, 3: 0.2 + 0.8 * 0.75, 6: 0.2 + 0.8 * 0.25, 9: 0.2}),
    ("constant", 10, 4, {}, {0: 0.0, 1: 0.25, 3: 0.75, 4: 1.0, 10: 1.0, 50: 1.0}),
    ("constant", 10, 0.0, {}, {0: 1.0, 9: 1.0}),
]


@pytest.mark.parametrize("name, total, warmup, kwargs, table", TABLES)
def test_schedule_table(name, total, warmup, kwargs, table):
    fn = build_schedule(name, total, warmup=warmup, **kwargs)
    for step, want in table.items():
        assert fn(step) == pytest.approx(want, abs=1e-12), (name, step)


def test_names_are_case_insensitive_and_registered():
    assert set(SCHEDULES) == {"poly", "lans", "cosine", "constant"}
    assert build_schedule("Cosine", 10, warmup=2)(1) == 0.5


def test_warmup_ratio_equals_the_same_number_of_steps():
    by_ratio, by_steps = build_schedule("poly", 200, warmup=0.1), build_schedule("poly", 200,
                                                                                 warmup=20)
    assert [by_ratio(s) for s in range(201)] == [by_steps(s) for s in range(201)]


def test_fractional_warmup_keeps_the_formula():
    fn = build_schedule("lans", 7, warmup=0.1, constant=0.2)  # w·total = 0.7 steps
    assert fn(0) == 0.0 and fn(1) == 1.0
    assert fn(3) == pytest.approx((1 - 3 / 7) / (1 - 0.1 - 0.2))


def test_with_lambda_lr():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, build_schedule("poly", 4, warmup=2))
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 1.0, 2.0, 1.0, 0.0])


def test_phases_restart_warmup_at_the_boundary():
    phase1, phase2 = build_schedule("poly", 10, warmup=0.2), build_schedule("poly", 4, warmup=2)
    fn = phased_schedule([(10, phase1), (4, phase2)])
    got = [fn(s) for s in range(16)]
    want = [phase1(s) for s in range(10)] + [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    assert got == pytest.approx(want)


@pytest.mark.parametrize("call, message", [
    (lambda: build_schedule("linear", 10), "unknown schedule 'linear': expected one of poly, "
                                           "lans, cosine, constant"),
    (lambda: build_schedule("poly", 0), "total_steps=0 is invalid: expected an int >= 1"),
    (lambda: build_schedule("poly", 10, warmup=1.0), "warmup=1.0 is invalid: expected a float "
                                                     "ratio in [0, 1)"),
    (lambda: build_schedule("poly", 10, warmup=11), "int number of steps in [0, 10]"),
    (lambda: build_schedule("poly", 10, warmup=-0.1), "warmup=-0.1 is invalid"),
    (lambda: build_schedule("poly", 10, warmup=True), "warmup=True is invalid"),
    (lambda: build_schedule("poly", 10, degree=2), "schedule 'poly': unknown argument 'degree'; "
                                                   "accepted: power, end"),
    (lambda: build_schedule("poly", 10, end=1.5),
     "end=1.5 is invalid: expected a number in [0, 1]"),
    (lambda: build_schedule("lans", 10, warmup=0.5, constant=0.5), "warmup + constant = 1 of "
                                                                   "total_steps is invalid"),
    (lambda: build_schedule("cosine", 10, floor=-1), "floor=-1 is invalid"),
    (lambda: phased_schedule([]), "phases=[] is invalid"),
    (lambda: phased_schedule([(0, math.cos)]), "phases[0]=(0, "),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)
