"""Building optimizers by name or import path, and bad arguments raising ValueError that names
the argument and what would be valid."""
from __future__ import annotations

import pytest
import torch

from scaling_study.optim import OPTIMIZERS, Lamb, Lans, Lars, RAdamW, build_optimizer


def _params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.zeros(3))]


def test_registry_holds_the_five_optimizers():
    assert OPTIMIZERS == {"lamb": Lamb, "lans": Lans, "lars": Lars,
                          "adamw": torch.optim.AdamW, "radam": RAdamW}


@pytest.mark.parametrize("name", ["LAMB", "Lans", "lars", "AdamW", "radam"])
def test_build_by_name_is_case_insensitive(name):
    opt = build_optimizer(name, _params(), lr=0.1)
    assert type(opt) is OPTIMIZERS[name.lower()]
    assert opt.param_groups[0]["lr"] == 0.1


def test_adamw_gets_the_fused_kernel_and_radam_decoupled_decay():
    adamw = build_optimizer("adamw", _params(), lr=0.1)
    assert adamw.defaults["fused"] is True
    foreach = build_optimizer("adamw", _params(), lr=0.1, foreach=True)
    assert foreach.defaults["foreach"] is True and not foreach.defaults["fused"]
    radam = build_optimizer("radam", _params(), lr=0.1, weight_decay=0.01)
    assert radam.defaults["decoupled_weight_decay"] is True


def test_adamw_falls_back_to_foreach_where_torch_has_no_fused_kernel():
    cplx = torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))  # fused AdamW takes real dtypes only
    opt = build_optimizer("adamw", [*_params(), cplx], lr=0.1)
    assert opt.defaults["foreach"] is True and not opt.defaults["fused"]
    cplx.grad = torch.ones_like(cplx)
    opt.step()


@pytest.mark.parametrize("path", ["torch.optim:SGD", "torch.optim.SGD"])
def test_build_a_user_class_by_import_path(path):
    opt = build_optimizer(path, _params(), lr=0.1, momentum=0.5)
    assert type(opt) is torch.optim.SGD


@pytest.mark.parametrize("name, message", [
    ("adam_w", "unknown optimizer 'adam_w': expected one of lamb, lans, lars, adamw, radam"),
    ("torch.optim:Nope", "cannot import optimizer 'torch.optim:Nope'"),
    ("no_such_pkg.mod:Opt", "cannot import optimizer"),
    ("torch.nn:Linear", "not a torch.optim.Optimizer subclass"),
    ("", "optimizer name '' is invalid"),
])
def test_unknown_optimizer_lists_the_valid_names(name, message):
    with pytest.raises(ValueError, match="lamb, lans, lars, adamw, radam|not a torch") as err:
        build_optimizer(name, _params(), lr=0.1)
    assert message in str(err.value)


def test_unknown_kwarg_is_named_with_the_accepted_ones():
    with pytest.raises(ValueError) as err:
        build_optimizer("lamb", _params(), lr=0.1, momentum=0.9)
    assert "'momentum'" in str(err.value)
    assert "accepted: lr, betas, eps, weight_decay, bias_correction" in str(err.value)
    with pytest.raises(ValueError, match="'nesterov'.*accepted: lr, momentum"):
        build_optimizer("lars", _params(), lr=0.1, nesterov=True)


BAD_ARGS = [
    (Lamb, dict(lr=-1e-3), "lr=-0.001 is invalid: expected a number >= 0"),
    (Lamb, dict(betas=(0.9, 1.0)), "betas=(0.9, 1.0) is invalid: expected a pair (beta1, beta2), "
                                   "each in [0, 1)"),
    (Lans, dict(betas=(-0.1, 0.999)), "betas=(-0.1, 0.999) is invalid"),
    (Lamb, dict(betas=0.9), "betas=0.9 is invalid"),
    (Lamb, dict(eps=0.0), "eps=0.0 is invalid: expected a number > 0"),
    (Lans, dict(eps=-1e-6), "eps=-1e-06 is invalid: expected a number > 0"),
    (Lamb, dict(weight_decay=-0.1), "weight_decay=-0.1 is invalid: expected a number >= 0"),
    (Lamb, dict(weight_norm_bounds=(2.0, 1.0)), "weight_norm_bounds=(2.0, 1.0) is invalid"),
    (Lamb, dict(impl="cuda"), "impl='cuda' is invalid: expected one of auto, fused, foreach"),
    (Lars, dict(lr=-1.0), "lr=-1.0 is invalid"),
    (Lars, dict(lr=0.1, momentum=1.0), "momentum=1.0 is invalid: expected a number in [0, 1)"),
    (Lars, dict(lr=0.1, eps=-1.0), "eps=-1.0 is invalid: expected a number >= 0"),
    (Lars, dict(lr=0.1, trust_coefficient=0.0), "trust_coefficient=0.0 is invalid"),
]


@pytest.mark.parametrize("cls, kwargs, message", BAD_ARGS)
def test_bad_hyperparameters_raise_value_error(cls, kwargs, message):
    with pytest.raises(ValueError) as err:
        cls(_params(), **kwargs)
    assert message in str(err.value)


def test_bad_hyperparameter_in_a_group_raises():
    with pytest.raises(ValueError, match="lr=-0.5 is invalid"):
        Lamb([{"params": _params(), "lr": -0.5}], lr=0.1)
    opt = Lamb(_params(), lr=0.1)
    with pytest.raises(ValueError, match="betas=\\(1.5, 0.9\\) is invalid"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "betas": (1.5, 0.9)})


def test_fused_impl_refuses_what_it_cannot_run_and_auto_falls_back():
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    w.grad = torch.ones(3, dtype=torch.float64)
    with pytest.raises(RuntimeError,
                       match=r"Lamb\(impl='fused'\) needs contiguous float32/bfloat16 tensors, "
                             r"on the CPU with a C\+\+ compiler or on CUDA with Triton; "
                             r"got torch.float64 on cpu"):
        Lamb([w], lr=0.1, impl="fused").step()
    Lamb([w], lr=0.1).step()  # auto: the foreach path handles float64
    assert w.detach().lt(1).all()


def test_sparse_gradients_are_refused():
    w = torch.nn.Parameter(torch.ones(3))
    w.grad = torch.ones(3).to_sparse()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        Lans([w], lr=0.1).step()
