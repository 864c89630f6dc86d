"""What a fused step costs the host, and how the fused path fails safe; no GPU and no Triton needed.

Stand-in kernel modules (registered for the CPU in ``base.FUSED``) record what the optimizers ask
of them: ``supports`` is decided once per parameter set, the step counter is one per group, the
address table is built once per address set, unaligned tensors get a launch of their own, and a
Triton that imports but cannot launch (no C compiler for its launcher) falls back to foreach with
one warning. ``test_optim_triton.py`` checks the kernels' math in Triton's interpreter.
"""
from __future__ import annotations

import functools
import subprocess
import types
import warnings

import pytest
import torch

from scaling_study.optim import Lamb, Lans, Lars, _triton, base
from scaling_study.optim import functional as F


def _params(n: int = 4, numel: int = 10) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(numel, generator=gen)) for _ in range(n)]


def _grad(params, step: int) -> None:
    gen = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)  # new gradient tensors every step


def _recording_kernels(calls: dict) -> types.ModuleType:
    """A fused-kernel module for CPU tensors that counts ``supports`` calls and computes with the
    foreach math."""
    mod = types.ModuleType("recording_kernels")

    def supports(tensors):
        calls["supports"] += 1
        calls["supported"] += len(tensors)
        return True

    def lamb_update(*args, **kwargs):
        calls["steps"].append(args[4])
        F.lamb_update(*args, **kwargs)

    mod.supports, mod.available, mod.lamb_update = supports, lambda: True, lamb_update
    return mod


def test_supports_is_decided_once_per_parameter_set_and_the_step_is_one_per_group(monkeypatch):
    calls = {"supports": 0, "supported": 0, "steps": []}
    monkeypatch.setitem(base.FUSED, "cpu", _recording_kernels(calls))
    params = _params()
    opt = Lamb([{"params": params[:2], "weight_decay": 0.01}, {"params": params[2:]}], lr=0.01)
    for step in range(3):
        _grad(params, step)
        opt.step()
    # per group: params + 2 states once (6 tensors), then 1 param + 2 gradients each step (3)
    assert calls["supported"] == 2 * 6 + 3 * 2 * 3
    assert calls["steps"] == [1, 1, 2, 2, 3, 3]
    assert [g["step"] for g in opt.param_groups] == [3, 3]
    assert all("step" not in opt.state[p] for p in params)  # no per-tensor counters


@pytest.mark.parametrize("cls", [Lamb, Lans, Lars])
def test_a_checkpoint_with_a_step_per_parameter_loads_into_the_group_counter(cls):
    params = _params()
    opt = cls(params, lr=0.01, impl="foreach")
    _grad(params, 0)
    opt.step()
    old = opt.state_dict()  # as the optimizers wrote it before the counter moved to the group
    del old["param_groups"][0]["step"]
    for s in old["state"].values():
        s["step"] = torch.tensor(7.0)
    fresh = cls(params, lr=0.01, impl="foreach")
    fresh.load_state_dict(old)
    assert fresh.param_groups[0]["step"] == 7
    assert all("step" not in fresh.state[p] for p in params)


class _Kernel:
    """``kernel[grid](*args)`` that raises what Triton raises when its launcher cannot build."""

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            raise subprocess.CalledProcessError(1, ["cc", "cuda_utils.c"], stderr="Python.h: No such file")
        return launch


def _fake_kernels(**kernels) -> types.ModuleType:
    mod = types.ModuleType("fake_triton_kernels")
    mod.DTYPES = {torch.float32: "fp32", torch.bfloat16: "bf16"}
    for name, k in kernels.items():
        setattr(mod, name, k)
    return mod


@pytest.fixture
def triton_for_cpu(monkeypatch):
    """The Triton path registered for CPU tensors, its caches cleared before and after."""
    monkeypatch.setattr(_triton, "supports", functools.partial(_triton.supports, device_type="cpu"))
    monkeypatch.setitem(base.FUSED, "cpu", _triton)
    _triton.available.cache_clear()
    _triton.address_table.cache_clear()
    yield
    _triton.available.cache_clear()
    _triton.address_table.cache_clear()


def test_a_failed_trial_launch_warns_once_and_auto_falls_back_to_foreach(monkeypatch, triton_for_cpu):
    monkeypatch.setattr(_triton, "kernels", lambda: _fake_kernels(sumsq=_Kernel()))
    params, reference = _params(), _params()
    opt = Lamb(params, lr=0.01, weight_decay=0.01)
    ref = Lamb(reference, lr=0.01, weight_decay=0.01, impl="foreach")
    with pytest.warns(RuntimeWarning, match="trial launch failed.*CalledProcessError.*C compiler"):
        _grad(params, 0)
        opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        _grad(params, 1)
        opt.step()
    for step in range(2):
        _grad(reference, step)
        ref.step()
    for a, b in zip(params, reference):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match=r"impl='fused'\) needs"):
        Lamb(params, lr=0.01, impl="fused").step()


def test_unaligned_tensors_get_a_launch_of_their_own(monkeypatch, triton_for_cpu):
    monkeypatch.setattr(_triton, "kernels", lambda: _fake_kernels())
    buffer = torch.zeros(64)
    aligned = [torch.zeros(8), torch.zeros(12)]
    odd = buffer[1:9]  # 4 bytes into its buffer
    assert odd.data_ptr() % 16 and all(t.data_ptr() % 16 == 0 for t in aligned)
    lists = [[aligned[0], odd, aligned[1]], [torch.zeros(8), torch.zeros(8), torch.zeros(12)]]
    first, second = _triton.launches(lists)
    assert (first.aligned, first.n, second.aligned, second.n) == (True, 2, False, 1)
    assert first.lists[0][1] is aligned[1] and second.lists[0][0] is odd
    (whole,) = _triton.launches([aligned, [torch.zeros(8), torch.zeros(12)]])
    assert whole.aligned and whole.n == 2


def test_the_address_table_is_built_once_while_the_tensors_stay(monkeypatch, triton_for_cpu):
    monkeypatch.setattr(_triton, "kernels", lambda: _fake_kernels())
    ws, gs = [torch.zeros(8), torch.zeros(4)], [torch.zeros(8), torch.zeros(4)]
    (a,) = _triton.launches([ws, gs])
    (b,) = _triton.launches([ws, gs])
    assert a.ptrs is b.ptrs
    assert a.ptrs.tolist() == [t.data_ptr() for t in ws + gs]
    (c,) = _triton.launches([ws, [torch.zeros(8), torch.zeros(4)]])  # new gradients elsewhere
    assert c.ptrs is not a.ptrs and c.ptrs.tolist()[2:] != a.ptrs.tolist()[2:]
