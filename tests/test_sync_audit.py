"""No host sync in a training step, audited on the CPU: a tiny BERT for both tasks takes the
product's step (built by `build_worker`, as Ray Train's workers build it) while a torch function
mode counts every call that would read a GPU tensor back on the host (`.item()`, `.tolist()`,
`bool()`/`int()`/`float()` of a tensor, `nonzero`, `masked_select`, `.cpu()`, `.numpy()`, a
boolean index). On a GPU each of them stalls the device every step. torch.optim's step counts
live on the CPU on every device, so reading them is no sync and is not counted.

With a GPU, the same steps run under `torch.cuda.set_sync_debug_mode("error")` (the last test;
it skips on a CPU). fp16 is the one documented exception: the GradScaler reads its overflow flag
once per step, which bf16 (no scaler) avoids.
"""
import contextlib
import dataclasses
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from scaling_study.bench.gpu_check import Context
from scaling_study.bench.gpu_checks import _train

READS = {Tensor.item, Tensor.tolist, Tensor.__bool__, Tensor.__int__, Tensor.__float__, Tensor.nonzero,
         torch.nonzero, torch.masked_select, Tensor.masked_select, Tensor.cpu, Tensor.numpy}


def _boolean(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, Tensor) and i.dtype == torch.bool for i in items)


class HostReads(TorchFunctionMode):
    """Counts the calls that would read a device tensor back on the host, except on `host_side`
    tensors (those that live on the CPU on every device)."""

    def __init__(self, host_side=()):
        super().__init__()
        self.calls: list[str] = []
        self.host_side = {id(t) for t in host_side}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        first = args[0] if args else None
        if func in READS and not (isinstance(first, Tensor) and id(first) in self.host_side):
            self.calls.append(func.__name__)
        elif func in (Tensor.__getitem__, Tensor.__setitem__) and _boolean(args[1]):
            self.calls.append("boolean index")
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return Context(out=tmp_path_factory.mktemp("audit") / "check", device="cpu", model="tiny", examples=200)


@contextlib.contextmanager
def _cuda_raises_on_sync():
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # torch raises on any synchronising call
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _audited_steps(ctx, task: str, optimizer: str, *, scaler=None, device="cpu") -> list[str]:
    """Host reads in 2 steps of the product's step, after 2 warm-up steps (state allocated,
    kernels compiled); the micro-batches are taken beforehand (their copy to a GPU is the
    loader's, not the step's). On a GPU torch raises on any sync in those 2 steps as well."""
    ctx = dataclasses.replace(ctx, device=device)
    job = ctx.job(task, precision="bf16", optimizer=optimizer, steps=8, batch=8, name=f"{task}_{optimizer}")
    state, _, phase, batches = _train(ctx, job)
    state.scaler = scaler
    for _ in range(2):
        state.step(phase, batches)
    state.settle()
    ready = iter([next(batches) for _ in range(2)])
    steps = [s["step"] for s in state.optimizer.state.values() if "step" in s]
    strict = _cuda_raises_on_sync() if device == "cuda" else contextlib.nullcontext()
    with HostReads(steps) as reads, strict:
        for _ in range(2):
            state.step(phase, ready)
    return reads.calls


def test_the_audit_sees_every_kind_of_host_read():
    x = torch.ones(3)
    with HostReads() as reads:
        x[0].item(), x.tolist(), bool(x.all()), float(x.sum()), torch.nonzero(x)
        x[x > 0], x.masked_select(x > 0)
        x[x > 5] = 1.0
    assert reads.calls == ["item", "tolist", "__bool__", "__float__", "nonzero", "boolean index",
                           "masked_select", "boolean index"]


def test_the_audit_sees_transformers_padding_check_that_the_qa_model_avoids(ctx):
    from transformers import BertForQuestionAnswering

    from scaling_study.models import build_model, load_tokenizer

    ours = build_model("tiny", "squad", load_tokenizer("default"), seed=0)
    parent = BertForQuestionAnswering(ours.config)
    ids = torch.randint(1000, 2000, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    with HostReads() as seen:
        parent(input_ids=ids, attention_mask=mask)
    with HostReads() as avoided:
        ours(input_ids=ids, attention_mask=mask)
    assert seen.calls and not avoided.calls


@pytest.mark.parametrize("task, optimizer", [("squad", "lamb"), ("squad", "radam"), ("mlm", "lans")])
def test_a_training_step_reads_nothing_back(ctx, task, optimizer):
    assert _audited_steps(ctx, task, optimizer) == []


def test_fp16s_grad_scaler_reads_its_overflow_flag_once_per_step(ctx):
    """The documented exception (train.precision): bf16 is the sync-free mode."""
    assert _audited_steps(ctx, "squad", "lamb", scaler=torch.amp.GradScaler("cpu")) == ["item", "item"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("task, optimizer", [("squad", "lamb"), ("squad", "radam"), ("mlm", "lans")])
def test_on_a_gpu_a_training_step_never_synchronises(ctx, task, optimizer):
    assert _audited_steps(ctx, task, optimizer, device="cuda") == []
