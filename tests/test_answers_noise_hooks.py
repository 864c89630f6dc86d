"""The noise-scale norms as training collects them: a DDP communication hook in a real 2-process
gloo DDP, and the one-worker micro-batch hooks, against gradients computed by hand."""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from scaling_study.answers.noise_hooks import MicroBatchNorms, NormState, noise_scale_hook

D, PER_RANK, ACCUM, WORLD = 5, 6, 2, 2
# The loss is multiplied by this, as fp16's GradScaler does: `step_norms` divides it out again.
SCALE = 4.0


def regression_data(rank: int, micro: int):
    g = torch.Generator().manual_seed(100 * rank + micro)
    x = torch.randn(PER_RANK, D, generator=g, dtype=torch.float64)
    noise = torch.randn(PER_RANK, generator=g, dtype=torch.float64)
    return x, x @ torch.arange(1.0, D + 1, dtype=torch.float64) + noise


def hand_gradient(w, b, rank):
    """Mean-squared-error gradient of y ≈ x·w + b over the rank's ACCUM micro-batches, by hand:
    ∂/∂w ½(x·w + b − y)² = x r, ∂/∂b = r, averaged over samples and micro-batches."""
    grads = []
    for micro in range(ACCUM):
        x, y = regression_data(rank, micro)
        r = x @ w + b - y
        grads.append(torch.cat([x.T @ r / PER_RANK, r.mean().reshape(1)]))
    return torch.stack(grads).mean(0)


def _regression_worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    model = nn.Linear(D, 1).double()
    # A tiny bucket cap puts weight and bias in buckets of their own: the hook sums over buckets.
    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=1e-6, gradient_as_bucket_view=True)
    state = NormState()
    ddp.register_comm_hook(state, noise_scale_hook)
    # Two steps: DDP's first step puts everything in one bucket, then rebuilds them by the cap.
    for step in range(2):
        state.take()
        model.zero_grad(set_to_none=True)
        for micro in range(ACCUM):  # accumulate locally, all-reduce on the last micro-batch
            x, y = regression_data(rank, micro)
            with ddp.no_sync() if micro < ACCUM - 1 else torch.enable_grad():
                (SCALE * 0.5 * (ddp(x).squeeze(1) - y).pow(2).mean() / ACCUM).backward()
    n_buckets = len(state.local)
    local_sq, reduced_sq = (float(t) for t in (torch.stack(state.local).sum(), torch.stack(state.reduced).sum()))
    norms = state.step_norms(ACCUM, grad_scale=torch.tensor(SCALE))
    dist.all_reduce(norms)  # as training settles them: summed over workers, then divided
    small, big = (norms / WORLD).tolist()
    w, b = model.weight.detach().reshape(-1), model.bias.detach()
    torch.save({"buckets": n_buckets, "local_sq": local_sq, "reduced_sq": reduced_sq, "small": small, "big": big,
                "grad": torch.cat([model.weight.grad.reshape(-1), model.bias.grad]) / SCALE,
                "hand": [hand_gradient(w, b, r) for r in range(WORLD)], "none": state.step_norms(ACCUM)},
               f"{out}.{rank}")
    dist.destroy_process_group()
    # gloo's threads can outlive the group and abort the process in C++ static destructors at
    # exit ("terminate called without an active exception"): leave without running them.
    os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_hook_norms_equal_the_hand_computed_ones(tmp_path):
    out = str(tmp_path / "r")
    mp.spawn(_regression_worker, args=(_free_port(), out), nprocs=WORLD)
    results = [torch.load(f"{out}.{r}") for r in range(WORLD)]
    hand = results[0]["hand"]
    mean = torch.stack(hand).mean(0)
    for rank, res in enumerate(results):
        assert res["buckets"] == 2
        assert abs(res["local_sq"] - SCALE**2 * float(hand[rank] @ hand[rank])) < 1e-8
        assert abs(res["reduced_sq"] - SCALE**2 * float(mean @ mean)) < 1e-8
        torch.testing.assert_close(res["grad"], mean)  # the hook leaves DDP's result unchanged
        # The step's norms, unscaled and averaged over workers: the mean local |g|², the reduced |g|².
        assert abs(res["small"] - float(sum(h @ h for h in hand)) / WORLD) < 1e-9
        assert abs(res["big"] - float(mean @ mean)) < 1e-9
        assert res["none"] is None  # nothing reduced since


class Bag(nn.Module):
    """Mean of word embeddings, then a linear read-out: the word embedding's gradient is sparse."""

    def __init__(self, sparse: bool):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 4, sparse=sparse)
        self.out = nn.Linear(4, 1)

    def forward(self, ids):
        return self.out(self.emb(ids).mean(1)).squeeze(1)


def bag_batch(rank):
    g = torch.Generator().manual_seed(rank)
    return torch.randint(0, 50, (3, 7), generator=g), torch.randn(3, generator=g)


def _sparse_worker(rank, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    ddp = nn.parallel.DistributedDataParallel(Bag(sparse=True))
    state = NormState()
    ddp.register_comm_hook(state, noise_scale_hook)
    ids, y = bag_batch(rank)
    (ddp(ids) - y).pow(2).mean().backward()
    local, reduced = state.take()
    torch.save({"local": float(local), "reduced": float(reduced)}, f"{out}.{rank}")
    dist.destroy_process_group()
    # gloo's threads can outlive the group and abort the process in C++ static destructors at
    # exit ("terminate called without an active exception"): leave without running them.
    os._exit(0)


def test_ddp_hook_handles_a_sparse_embedding_gradient(tmp_path):
    """gloo all-reduces the sparse bucket uncoalesced; its norm must count repeated rows once."""
    out = str(tmp_path / "s")
    mp.spawn(_sparse_worker, args=(_free_port(), out), nprocs=WORLD)
    grads = []
    for rank in range(WORLD):
        dense = Bag(sparse=False)
        ids, y = bag_batch(rank)
        (dense(ids) - y).pow(2).mean().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in dense.parameters()]))
    mean = torch.stack(grads).mean(0)
    for rank in range(WORLD):
        res = torch.load(f"{out}.{rank}")
        assert abs(res["local"] - float(grads[rank] @ grads[rank])) < 1e-5
        assert abs(res["reduced"] - float(mean @ mean)) < 1e-5


def test_micro_batch_hooks_give_each_micro_batch_and_their_mean():
    model = nn.Linear(D, 1).double()
    norms = MicroBatchNorms(list(model.parameters()))
    w, b = model.weight.detach().reshape(-1), model.bias.detach()
    micro_grads = []
    for micro in range(3):
        x, y = regression_data(0, micro)
        (0.5 * (model(x).squeeze(1) - y).pow(2).mean() / 3).backward()
        r = x @ w + b - y
        micro_grads.append(torch.cat([x.T @ r / PER_RANK, r.mean().reshape(1)]))
    small, big = norms.step_norms(accum=3).tolist()
    mean = torch.stack(micro_grads).mean(0)
    assert abs(small - float(sum(g @ g for g in micro_grads)) / 3) < 1e-9
    assert abs(big - float(mean @ mean)) < 1e-9
    assert norms.step_norms(accum=3) is None  # nothing since
    norms.active = False  # a phase without accumulation: the hooks take no norm
    model(regression_data(0, 0)[0]).sum().backward()
    assert norms.sq == [] and norms.step_norms(accum=1) is None
    norms.active = True
    norms.remove()
    model(regression_data(0, 0)[0]).sum().backward()
    assert norms.sq == []


def test_micro_batch_norms_take_many_tensors_per_launch(monkeypatch):
    """40 parameters, 2 micro-batches: the norms come from a few torch._foreach_norm calls (at
    most FLUSH tensors held), never one norm per parameter, and equal the hand-computed ones."""
    import scaling_study.answers.noise_hooks as hooks

    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(20)])
    params = list(model.parameters())
    xs = [torch.randn(3, 4) for _ in range(2)]
    per_micro = []
    for x in xs:  # by hand: each micro-batch's |g|²
        model.zero_grad()
        model(x).square().sum().backward()
        per_micro.append(sum(float(p.grad.square().sum()) for p in params))
    model.zero_grad()
    calls = {"foreach": 0, "single": 0}
    real_foreach, real_single = torch._foreach_norm, hooks.squared_norm

    def foreach(*a, **k):
        calls["foreach"] += 1
        return real_foreach(*a, **k)

    def single(t):
        calls["single"] += 1
        return real_single(t)

    monkeypatch.setattr(torch, "_foreach_norm", foreach)
    monkeypatch.setattr(hooks, "squared_norm", single)
    norms = MicroBatchNorms(params)
    for x in xs:
        (model(x).square().sum() / 2).backward()
    small, big = norms.step_norms(2).tolist()
    norms.remove()
    # 80 incoming gradients in batches of FLUSH (3 launches), the accumulated 40 in one
    assert calls == {"foreach": 4, "single": 0}
    assert abs(small - sum(per_micro) / 2) < 1e-6 * small
    assert abs(big - sum(float(p.grad.square().sum()) for p in params)) < 1e-6 * big
