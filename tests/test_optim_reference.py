"""LAMB, LANS and LARS against plain per-tensor references written from the papers' formulas.

The references below loop over tensors in float64 and follow the issue's formulas line by line
(and the authors' code where the papers are silent: the ratio is 1 where a norm is 0, ĝ = g where
‖g‖ = 0). Each optimizer runs several steps over a decayed group and a no-decay group that hold a
multi-chunk tensor, a zero weight tensor, a zero-gradient tensor and a parameter without a
gradient, with both implementations (fused CPU kernels and foreach), in float32 and bfloat16.
"""
from __future__ import annotations

import pytest
import torch

from scaling_study.optim import Lamb, Lans, Lars, _native

# The fused kernels need a C++ compiler; without one the optimizers fall back to foreach.
IMPLS = ["foreach", pytest.param("fused", marks=pytest.mark.skipif(
    _native.compiler() is None, reason="no C++ compiler for the fused CPU kernels"))]

# name -> (shape, group). 70_001 elements: three kernel chunks and a ragged tail.
SHAPES = {
    "big": ((70_001,), "decay"),
    "mat": ((40, 30), "decay"),
    "zero_w": ((16, 8), "decay"),
    "zero_g": ((33,), "decay"),
    "no_grad": ((5, 5), "decay"),
    "bias": ((30,), "plain"),
    "ln": ((30,), "plain"),
}
STEPS = 5


def init_weights(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ws = {n: (torch.randn(s, generator=gen) * 0.5).to(dtype) for n, (s, _) in SHAPES.items()}
    ws["zero_w"].zero_()
    return ws


def gradient(name: str, step: int, like: torch.Tensor) -> torch.Tensor | None:
    if name == "no_grad":
        return None
    if name == "zero_g":
        return torch.zeros_like(like)
    gen = torch.Generator().manual_seed(1000 * step + len(name))
    scale = 1e-2 * (1 + step)  # changing scale: LANS's normalisation must matter
    return (torch.randn(like.shape, generator=gen) * scale).to(like.dtype)


def _ratio(num: float, den: float) -> float:
    return num / den if num > 0 and den > 0 else 1.0


def lamb_ref(w, g, st, *, lr, betas, eps, weight_decay, adapt, bias_correction=True,
             trust_clip=False, weight_norm_bounds=None):
    b1, b2 = betas
    st["t"] += 1
    st["m"] = b1 * st["m"] + (1 - b1) * g
    st["v"] = b2 * st["v"] + (1 - b2) * g * g
    bc1, bc2 = (1 - b1 ** st["t"], 1 - b2 ** st["t"]) if bias_correction else (1.0, 1.0)
    r = (st["m"] / bc1) / ((st["v"] / bc2).sqrt() + eps) + weight_decay * w
    ratio = 1.0
    if adapt:
        w_norm, r_norm = w.norm().item(), r.norm().item()
        phi = min(max(w_norm, weight_norm_bounds[0]), weight_norm_bounds[1]) \
            if weight_norm_bounds else w_norm
        ratio = phi / r_norm if w_norm > 0 and r_norm > 0 else 1.0
        ratio = min(ratio, 1.0) if trust_clip else ratio
    return w - lr * ratio * r


def lans_ref(w, g, st, *, lr, betas, eps, weight_decay):
    b1, b2 = betas
    st["t"] += 1
    g_norm = g.norm().item()
    g_hat = g / g_norm if g_norm > 0 else g
    st["m"] = b1 * st["m"] + (1 - b1) * g_hat
    st["v"] = b2 * st["v"] + (1 - b2) * g_hat * g_hat
    d = (st["v"] / (1 - b2 ** st["t"])).sqrt() + eps
    r1 = st["m"] / (1 - b1 ** st["t"]) / d + weight_decay * w
    r2 = g_hat / d + weight_decay * w
    w_norm = w.norm().item()
    return w - lr * (b1 * _ratio(w_norm, r1.norm().item()) * r1
                     + (1 - b1) * _ratio(w_norm, r2.norm().item()) * r2)


def lars_ref(w, g, st, *, lr, momentum, weight_decay, trust_coefficient, eps, adapt):
    w_norm, g_norm = w.norm().item(), g.norm().item()
    local = 1.0
    if adapt and w_norm > 0 and g_norm > 0:
        local = trust_coefficient * w_norm / (g_norm + weight_decay * w_norm + eps)
    st["m"] = momentum * st["m"] + lr * local * (g + weight_decay * w)
    return w - st["m"]


def run_reference(ref, groups_hyper: dict[str, dict], steps: int = STEPS):
    """Run ``ref`` per tensor in float64 from float32-rounded initial weights and gradients."""
    ws = {n: w.double() for n, w in init_weights(torch.float32).items()}
    states = {n: {"t": 0, "m": torch.zeros_like(w), "v": torch.zeros_like(w)}
              for n, w in ws.items()}
    for step in range(steps):
        for n, (_, group) in SHAPES.items():
            g = gradient(n, step, ws[n].float())
            if g is not None:
                ws[n] = ref(ws[n], g.double(), states[n], **groups_hyper[group])
    return ws


def run_optimizer(cls, groups_hyper: dict[str, dict], weights: dict | None = None,
                  steps: int = STEPS, **common):
    weights = init_weights(torch.float32) if weights is None else weights
    ws = {n: torch.nn.Parameter(w.clone()) for n, w in weights.items()}
    groups = [{"params": [ws[n] for n, (_, g) in SHAPES.items() if g == group], **hyper}
              for group, hyper in groups_hyper.items()]
    opt = cls(groups, **common)
    for step in range(steps):
        for n, p in ws.items():
            p.grad = gradient(n, step, p.detach())
        opt.step()
    return {n: p.detach() for n, p in ws.items()}


def assert_close(got: dict, want: dict, rtol: float, atol: float) -> None:
    for n in SHAPES:
        torch.testing.assert_close(got[n].double(), want[n], rtol=rtol, atol=atol,
                                   msg=lambda m, n=n: f"{n}: {m}")


LAMB_GROUPS = {"decay": dict(lr=0.02, weight_decay=0.01), "plain": dict(lr=0.02, weight_decay=0.0)}
LAMB_CASES = {
    "default": {},
    "always_adapt": dict(always_adapt=True),
    "no_adapt": dict(adapt=False),
    "trust_clip": dict(trust_clip=True),
    "bounds": dict(weight_norm_bounds=(0.0, 5.0)),
    "no_bias_correction": dict(bias_correction=False),
}


def _lamb_ref_hyper(options: dict) -> dict[str, dict]:
    """The reference's per-group arguments, with the group convention spelled out."""
    out = {}
    for group, hyper in LAMB_GROUPS.items():
        adapt = options.get("adapt", True) and (hyper["weight_decay"] != 0
                                                 or options.get("always_adapt", False))
        out[group] = dict(hyper, betas=(0.9, 0.999), eps=1e-6, adapt=adapt,
                          **{k: v for k, v in options.items()
                             if k not in ("adapt", "always_adapt")})
    return out


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", sorted(LAMB_CASES))
def test_lamb_matches_reference(impl, case):
    options = LAMB_CASES[case]
    want = run_reference(lamb_ref, _lamb_ref_hyper(options))
    got = run_optimizer(Lamb, LAMB_GROUPS, impl=impl, **options)
    assert_close(got, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_lans_matches_reference(impl):
    groups = {"decay": dict(lr=0.02, weight_decay=0.01), "plain": dict(lr=0.01, weight_decay=0.0)}
    want = run_reference(lans_ref, {k: dict(v, betas=(0.9, 0.999), eps=1e-6)
                                    for k, v in groups.items()})
    got = run_optimizer(Lans, groups, impl=impl)
    assert_close(got, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("always_adapt", [False, True])
def test_lars_matches_reference(impl, always_adapt):
    groups = {"decay": dict(lr=0.5, weight_decay=0.01), "plain": dict(lr=0.05, weight_decay=0.0)}
    ref_groups = {k: dict(v, momentum=0.9, trust_coefficient=0.02, eps=1e-9,
                          adapt=v["weight_decay"] != 0 or always_adapt)
                  for k, v in groups.items()}
    want = run_reference(lars_ref, ref_groups)
    got = run_optimizer(Lars, groups, impl=impl, trust_coefficient=0.02, eps=1e-9,
                        always_adapt=always_adapt)
    assert_close(got, want, rtol=2e-5, atol=1e-6)


def test_parameters_without_gradient_and_state_untouched():
    w0 = init_weights(torch.float32)["no_grad"]
    for cls in (Lamb, Lans):
        got = run_optimizer(cls, {"decay": dict(weight_decay=0.01), "plain": {}}, lr=0.1)
        assert torch.equal(got["no_grad"], w0)
    opt = Lamb([torch.nn.Parameter(torch.ones(3))], lr=0.1)
    opt.step()
    assert not opt.state  # no state is created for a parameter that never had a gradient


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cls", [Lamb, Lans, Lars])
def test_bfloat16_params_follow_the_float64_reference(cls, impl):
    """bf16 weights, grads and state move like a float32 run from the same (bf16) start, up to
    bf16 rounding (8 significant bits) of the weights and of the state."""
    groups = {"decay": dict(lr=0.02, weight_decay=0.01), "plain": dict(lr=0.02, weight_decay=0.0)}
    # LARS with trust_coefficient 1 moves each tensor by ~lr·‖w‖, like LAMB: well above bf16's ulp
    kwargs = dict(trust_coefficient=1.0) if cls is Lars else {}
    w0 = init_weights(torch.bfloat16)
    f32 = run_optimizer(cls, groups, {n: w.float() for n, w in w0.items()}, steps=3, impl=impl,
                        **kwargs)
    bf16 = run_optimizer(cls, groups, w0, steps=3, impl=impl, **kwargs)
    for n in SHAPES:
        assert bf16[n].dtype == torch.bfloat16
        moved, err = (f32[n] - w0[n].float()).norm(), (bf16[n].float() - f32[n]).norm()
        assert err <= 0.15 * moved + 5e-3 * w0[n].float().norm(), (n, err, moved)
