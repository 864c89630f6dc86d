"""state_dict → load_state_dict → the next step is identical; fused kernels are deterministic."""
from __future__ import annotations

import io

import pytest
import torch

from scaling_study.optim import _native, build_optimizer

NAMES = ["lamb", "lans", "lars", "adamw", "radam"]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(32, 8, generator=gen), torch.randn(32, 1, generator=gen)
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()


def _groups(model: torch.nn.Module) -> list[dict]:
    return [{"params": [model[0].weight, model[2].weight], "weight_decay": 0.01},
            {"params": [model[0].bias, model[2].bias], "weight_decay": 0.0}]


@pytest.mark.parametrize("name", NAMES)
def test_save_load_then_next_step_is_identical(name):
    model = _model()
    opt = build_optimizer(name, _groups(model), lr=0.01)
    for seed in range(3):
        _step(model, opt, seed)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)

    _step(model, opt, seed=99)  # the run that was never interrupted
    expected = [p.detach().clone() for p in model.parameters()]

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = _model()
    resumed.load_state_dict(saved["model"])
    opt2 = build_optimizer(name, _groups(resumed), lr=0.5)  # lr comes back from the state
    opt2.load_state_dict(saved["opt"])
    _step(resumed, opt2, seed=99)
    for got, want in zip(resumed.parameters(), expected):
        assert torch.equal(got.detach(), want)


@pytest.mark.parametrize("name", ["lamb", "lans", "lars"])
def test_state_holds_moments_and_each_group_one_step_count(name):
    model = _model()
    opt = build_optimizer(name, _groups(model), lr=0.01)
    _step(model, opt, 0)
    _step(model, opt, 1)
    state = opt.state[model[0].weight]
    assert [g["step"] for g in opt.param_groups] == [2, 2] and "step" not in state
    keys = {"momentum_buffer"} if name == "lars" else {"exp_avg", "exp_avg_sq"}
    assert keys <= state.keys()
    assert all(state[k].shape == model[0].weight.shape for k in keys)


@pytest.mark.parametrize("name", ["lamb", "lans", "lars"])
def test_closure_is_called_and_its_loss_returned(name):
    model = _model()
    opt = build_optimizer(name, model.parameters(), lr=0.01)
    x, y = torch.randn(4, 8), torch.randn(4, 1)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    first = opt.step(closure)
    assert isinstance(first, torch.Tensor) and opt.step(closure) < first


@pytest.mark.skipif(_native.compiler() is None, reason="no C++ compiler for the fused kernels")
@pytest.mark.parametrize("name", ["lamb", "lans", "lars"])
def test_fused_result_does_not_depend_on_thread_count(name):
    """Norms are summed per fixed-size chunk, in chunk order: no thread-count dependence."""
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            w = torch.nn.Parameter(torch.linspace(-1, 1, 100_003))
            opt = build_optimizer(name, [w], lr=0.01, weight_decay=0.01, impl="fused")
            w.grad = torch.cos(torch.arange(100_003.0))
            opt.step()
            results.append(w.detach())
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1])
