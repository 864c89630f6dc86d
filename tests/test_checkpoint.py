"""A checkpoint restores everything a step depends on: a run restored from it continues exactly
as the run that wrote it did (weights, optimizer, schedule, data position, dropout's RNG, the
noise scale's moving averages)."""
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from scaling_study.config import Phase
from scaling_study.train import checkpoint
from scaling_study.train.gradient_noise import GradientNoise
from scaling_study.train.state import TrainState
from scaling_study.train.tasks import TaskData

CPU = torch.device("cpu")
# 2 examples x 2 micro-batches per step; 10 examples make 5 micro-batches an epoch, so 6 steps
# cross two epoch boundaries, and the checkpoint after 3 steps lies inside an epoch.
PHASE = Phase(index=0, steps=6, seq_len=8, per_worker_batch=2, grad_accum=2, global_batch=4, warmup=0, lr=0.1)
DATA = TaskData({8: [{"x": torch.randn(4, generator=torch.Generator().manual_seed(i)), "y": torch.tensor([i / 10])}
                     for i in range(10)]}, collate=None, evaluator=None)


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x, y):
        return SimpleNamespace(loss=((self.lin(self.drop(x)) - y) ** 2).mean())


def toy_state(seed: int) -> TrainState:
    torch.manual_seed(seed)
    model = Toy()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))
    # One worker accumulating 2 micro-batches: its noise scale compares them.
    noise = GradientNoise.attach(model, list(model.parameters()), world=1, phases=[PHASE])
    return TrainState(model=model, optimizer=optimizer, scheduler=scheduler, scaler=None, device=CPU,
                      rank=0, world=1, max_grad_norm=1.0, noise=noise)


def batches(state: TrainState):
    pos = state.position
    return DATA.micro_batches(PHASE, rank=0, world=1, seed=0, device=CPU, epoch=pos.epoch, consumed=pos.micro_batch)


def where(state: TrainState) -> tuple:
    p = state.position
    return p.step, p.samples, p.epoch, p.micro_batch


def test_a_restored_state_continues_exactly_as_the_uninterrupted_one(tmp_path):
    first = toy_state(seed=0)
    stream = batches(first)
    for _ in range(3):
        first.step(PHASE, stream)
    first.settle()
    checkpoint.write(tmp_path, first)
    assert where(first) == (3, 12, 1, 1)
    losses = [float(first.step(PHASE, stream)) for _ in range(3)]
    first.settle()
    assert first.noise.estimator.steps == 6 and np.isfinite(first.noise.record()["grad_trace"])

    second = toy_state(seed=1)  # other initial weights and RNG: all must come from the checkpoint
    checkpoint.read(tmp_path, second)
    assert second.restored and where(second) == (3, 12, 1, 1)
    assert second.clock.train == pytest.approx(second.position.train_time_s) and second.clock.train > 0
    stream = batches(second)
    assert second.noise.estimator.steps == 3, "the averages of the first 3 steps come from the checkpoint"
    assert [float(second.step(PHASE, stream)) for _ in range(3)] == losses
    second.settle()
    assert second.noise.record() == first.noise.record()
    assert where(second) == where(first) == (6, 24, 2, 2)
    assert second.lr == first.lr
    for name, value in first.module.state_dict().items():
        torch.testing.assert_close(second.module.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_rng_states_round_trip_and_a_gpu_worker_keeps_only_its_own_devices(monkeypatch):
    saved = checkpoint.capture_rng(CPU)
    drawn = (torch.rand(3), random.random(), np.random.rand())
    checkpoint.restore_rng(saved, CPU)
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(drawn[0], again[0]) and drawn[1:] == again[1:]
    assert "cuda" not in saved

    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: calls.append(("get", device)) or torch.zeros(8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append(("set", device)))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("read every visible GPU's RNG"))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("set every visible GPU's RNG"))
    gpu = torch.device("cuda", 1)
    checkpoint.restore_rng(checkpoint.capture_rng(gpu), gpu)
    assert calls == [("get", gpu), ("set", gpu)]


def test_optimizer_state_is_loaded_on_the_cpu_whatever_the_device(tmp_path, monkeypatch):
    """The optimizer moves its buffers to its parameters' device itself and keeps torch.optim's
    step counts on the host; loading the optimizer state onto a GPU would leave those counts there,
    and reading them would wait for the GPU at every step."""
    first = toy_state(seed=0)
    first.step(PHASE, batches(first))
    first.settle()
    checkpoint.write(tmp_path, first)
    where_to = {}
    real_load = torch.load

    def load(f, **kw):
        where_to[f.name] = kw.get("map_location")
        return real_load(f, **kw)

    monkeypatch.setattr(torch, "load", load)
    second = toy_state(seed=1)
    checkpoint.read(tmp_path, second)
    assert where_to["optim.pt"] == "cpu" and where_to["model.pt"] == second.device
    steps = [s["step"] for s in second.optimizer.state.values()]
    assert steps and all(t.device.type == "cpu" and float(t) == 1 for t in steps)
