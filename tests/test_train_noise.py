"""The noise scale as training measures it: each step's norms wait on the device, `settle` folds
them into the moving averages in order (restarting at a phase), and in a real 2-process gloo DDP
with the sparse word-embedding all-reduce the one all-reduce of `settle` gives the averages of the
gradients computed by hand."""
import math
import os
import socket
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from scaling_study.answers.noise import NoiseScale
from scaling_study.config import Phase
from scaling_study.train.gradient_noise import GradientNoise
from scaling_study.train.state import TrainState
from scaling_study.train.tasks import MicroBatch

CPU = torch.device("cpu")
WORLD = 2
# 3 samples x 2 micro-batches per worker and step: B_small = 6, B_big = 12.
PHASE = Phase(index=0, steps=2, seq_len=7, per_worker_batch=3, grad_accum=2, global_batch=12, warmup=0, lr=0.0)


class Scripted:
    """A collector that hands out given norms and remembers the loss scale it was given."""

    def __init__(self, norms):
        self.norms, self.scales = iter(norms), []

    def step_norms(self, accum, grad_scale=None):
        self.scales.append(grad_scale)
        norms = next(self.norms)
        return None if norms is None else torch.tensor(norms, dtype=torch.float64)


def test_steps_fold_in_order_restart_at_a_phase_and_skip_a_step_without_norms():
    p0, p1 = PHASE, Phase(index=1, steps=1, seq_len=7, per_worker_batch=2, grad_accum=2, global_batch=8,
                          warmup=0, lr=0.0)
    noise = GradientNoise(Scripted([(9.0, 5.0), None, (8.0, 5.0), (7.0, 4.0)]), world=WORLD)
    for phase in (p0, p0, p0):
        noise.take(phase, CPU)
    pending = noise.pending(CPU)
    assert pending.dtype == torch.float64 and pending.shape == (6,)  # every step keeps its place
    assert math.isnan(pending[2]) and math.isnan(pending[3])
    noise.fold(pending.tolist())
    expected = NoiseScale()
    expected.update(9.0, 5.0, 6, 12)
    expected.update(8.0, 5.0, 6, 12)
    assert noise.estimator.steps == 2 and noise.record() == pytest.approx(expected.record())
    noise.take(p1, CPU)
    noise.fold(noise.pending(CPU).tolist())
    expected.reset()  # phase 1 restarts the averages: its batch sizes count other samples
    expected.update(7.0, 4.0, 4, 8)
    assert noise.phase == 1 and noise.estimator.steps == 1 and noise.record() == pytest.approx(expected.record())
    assert noise.pending(CPU).numel() == 0

    again = GradientNoise(Scripted([(6.0, 4.0)]), world=WORLD)
    again.load_state_dict(noise.state_dict())
    again.take(p1, CPU)
    again.fold(again.pending(CPU).tolist())
    expected.update(6.0, 4.0, 4, 8)
    assert again.estimator.steps == 2 and again.record() == pytest.approx(expected.record())


def test_one_worker_without_accumulation_has_nothing_to_compare_and_fp16_passes_its_scale():
    one = Phase(index=0, steps=1, seq_len=7, per_worker_batch=3, grad_accum=1, global_batch=3, warmup=0, lr=0.0)
    collector = Scripted([(5.0, 1.0)])
    noise = GradientNoise(collector, world=1)
    noise.take(one, CPU)
    assert noise.pending(CPU).numel() == 0 and collector.scales == []
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    noise.take(Phase(index=0, steps=1, seq_len=7, per_worker_batch=3, grad_accum=2, global_batch=6, warmup=0,
                     lr=0.0), CPU, scaler)
    assert float(collector.scales[0]) == 4.0
    assert all(math.isnan(v) for v in GradientNoise(world=1).record().values())


class Bag(nn.Module):
    """Mean of word embeddings, then a linear read-out: a sparse word-embedding gradient, as the
    CPU workers' `scaling.sparse_embedding_allreduce` makes BERT's."""

    def __init__(self, sparse: bool):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 4, sparse=sparse)
        self.out = nn.Linear(4, 1)

    def forward(self, ids, y):
        return SimpleNamespace(loss=(self.out(self.emb(ids).mean(1)).squeeze(1) - y).pow(2).mean())


def bag_batch(rank: int, step: int, micro: int) -> dict:
    g = torch.Generator().manual_seed(100 * rank + 10 * step + micro)
    return {"ids": torch.randint(0, 50, (PHASE.per_worker_batch, PHASE.seq_len), generator=g),
            "y": torch.randn(PHASE.per_worker_batch, generator=g)}


def hand_norms(step: int) -> tuple[float, float]:
    """(mean over workers of |local accumulated gradient|², |all-reduced gradient|²), dense."""
    local = []
    for rank in range(WORLD):
        model = Bag(sparse=False)
        for micro in range(PHASE.grad_accum):
            (model(**bag_batch(rank, step, micro)).loss / PHASE.grad_accum).backward()
        local.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double())
    mean = torch.stack(local).mean(0)
    return float(sum(g @ g for g in local)) / WORLD, float(mean @ mean)


def _ddp_worker(rank, port, out):
    from scaling_study.train.setup import DDP_KWARGS

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    model = Bag(sparse=True)
    ddp = nn.parallel.DistributedDataParallel(model, **DDP_KWARGS)
    noise = GradientNoise.attach(ddp, list(model.parameters()), world=WORLD, phases=[PHASE])
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the weights stay: each step's gradients by hand
    state = TrainState(model=ddp, optimizer=opt, scheduler=torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0),
                       scaler=None, device=CPU, rank=rank, world=WORLD, sparse_params=[model.emb.weight], noise=noise)
    batches = (MicroBatch(0, i, bag_batch(rank, step, micro)) for i, (step, micro) in
               enumerate((s, m) for s in range(PHASE.steps) for m in range(PHASE.grad_accum)))
    for _ in range(PHASE.steps):
        state.step(PHASE, batches)
    state.settle()  # both steps at once: one all-reduce
    torch.save({"record": noise.record(), "steps": noise.estimator.steps}, f"{out}.{rank}")
    dist.destroy_process_group()
    # gloo's threads can outlive the group and abort the process in C++ static destructors at
    # exit ("terminate called without an active exception"): leave without running them.
    os._exit(0)


def test_ddp_steps_settle_into_the_averages_of_the_hand_computed_norms(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "r")
    mp.spawn(_ddp_worker, args=(port, out), nprocs=WORLD)
    expected = NoiseScale()
    for step in range(PHASE.steps):
        expected.update(*hand_norms(step), 6, 12)
    for rank in range(WORLD):  # every rank holds the same averages
        res = torch.load(f"{out}.{rank}")
        assert res["steps"] == PHASE.steps
        assert res["record"] == pytest.approx(expected.record(), rel=1e-4)
