"""What keeps a GPU busy, checked without one: a training step and an evaluation never read a
value back from the device (they run on PyTorch's meta device, where any read fails), the noise
scale's norms included, `settle` reads the steps once, the evaluation reduces on the worker's
device, the micro-batches come from a DataLoader that resumes exactly and masks the same with or
without loader processes, and BERT's buffers are constants (so DDP need not broadcast them)."""
import math
from types import SimpleNamespace

import pytest
import torch

from scaling_study.config import Phase
from scaling_study.train import checkpoint, evaluate, tasks
from scaling_study.train.gradient_noise import GradientNoise
from scaling_study.train.state import TrainState
from scaling_study.train.tasks import MicroBatch, TaskData

META = torch.device("meta")
CPU = torch.device("cpu")
PHASE = Phase(index=0, steps=9, seq_len=8, per_worker_batch=2, grad_accum=2, global_batch=4, warmup=0, lr=0.1)


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)
        self.drop = torch.nn.Dropout(0.1)

    def forward(self, x, y):
        return SimpleNamespace(loss=((self.lin(self.drop(x)) - y) ** 2).mean())


def toy_state(device, optimizer="lamb", max_grad_norm=None) -> TrainState:
    from scaling_study.optim import build_optimizer

    torch.manual_seed(0)
    model = Toy().to(device)
    opt = build_optimizer(optimizer, [{"params": list(model.parameters()), "weight_decay": 0.01}], lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    # PHASE accumulates 2 micro-batches: the noise scale's micro-batch hooks take norms every step.
    noise = GradientNoise.attach(model, list(model.parameters()), world=1, phases=[PHASE])
    return TrainState(model=model, optimizer=opt, scheduler=sched, scaler=None, device=device, rank=0, world=1,
                      max_grad_norm=max_grad_norm, noise=noise)


def toy_batches(device, scale: float = 1.0):
    i = 0
    while True:
        i += 1
        x = torch.randn(2, 4, generator=torch.Generator().manual_seed(i)) * scale
        yield MicroBatch(0, i, {"x": x.to(device), "y": torch.ones(2, 1).to(device)})


@pytest.mark.parametrize("optimizer", ["lamb", "lans", "adamw"])
def test_a_step_never_reads_the_device(optimizer):
    # clip_grad_norm_'s foreach kernels have no meta version: clipping is checked on CUDA
    state = toy_state(META, optimizer)
    batches = toy_batches(META)
    losses = [state.step(PHASE, batches) for _ in range(3)]
    assert all(loss.device == META for loss in losses) and state.unsettled == 3
    assert state.noise.pending(META).shape == (6,)  # each step's two norms, kept on the device
    assert state.position.step == 3 and state.position.samples == 12
    with pytest.raises((RuntimeError, NotImplementedError), match="meta"):
        state.settle()  # the one read, and so the one wait for the device


def test_settle_reads_loss_times_and_clock_of_the_steps_since_the_last(tmp_path):
    state = toy_state(CPU, max_grad_norm=1.0)
    batches = toy_batches(CPU)
    losses = [float(state.step(PHASE, batches)) for _ in range(3)]
    assert state.clock.train == 0 and state.window.steps == 0  # nothing read yet
    with pytest.raises(RuntimeError, match="settle"):
        checkpoint.write(tmp_path, state)  # its clocks would miss the 3 steps
    assert state.settle() == pytest.approx(sum(losses) / 3)
    w = state.window
    assert (w.steps, w.samples, state.unsettled) == (3, 12, 0)
    assert w.mean_loss() == pytest.approx(sum(losses) / 3)
    assert state.clock.train == pytest.approx(w.times["total"]) and state.clock.train > 0
    assert w.times["allreduce"] == 0 and w.per_step("compute") > 0 and w.per_step("optimizer") > 0
    assert w.throughput() == pytest.approx(12 / w.times["total"])
    assert state.noise.estimator.steps == 3 and state.noise.pending(CPU).numel() == 0  # read with the loss
    more = float(state.step(PHASE, batches))
    assert state.settle() == pytest.approx(more) and w.mean_loss() == pytest.approx((sum(losses) + more) / 4)
    checkpoint.write(tmp_path, state)


def test_one_non_finite_step_makes_the_settled_loss_non_finite():
    state = toy_state(CPU)
    good, bad = toy_batches(CPU), toy_batches(CPU, scale=float("inf"))
    for _ in range(3):
        state.step(PHASE, good)
    assert math.isfinite(state.settle())
    state.step(PHASE, good)
    state.step(PHASE, bad)  # one micro-batch of infinities; the steps after it are NaN anyway
    state.step(PHASE, good)
    assert not math.isfinite(state.settle())


class MeanModel(torch.nn.Module):
    """Stands for a model on any device: logits from the inputs, no parameters to move."""

    def forward(self, input_ids, labels=None, **_):
        logits = (input_ids.unsqueeze(-1) % 5 == torch.arange(5, device=input_ids.device)).float()
        out = SimpleNamespace(logits=logits, start_logits=logits[..., 0], end_logits=logits[..., 1])
        if labels is not None:
            out.loss = logits.mean()
        return out


def test_the_mlm_evaluation_sums_and_reduces_on_the_workers_device(monkeypatch):
    from scaling_study.data.dataset import TensorDictDataset

    ids = torch.arange(40).view(10, 4)
    labels = torch.where(ids % 3 == 0, ids % 5, torch.full_like(ids, -100))
    evaluator = evaluate.MlmEvaluator(TensorDictDataset({"input_ids": ids, "labels": labels}), batch_size=3)
    reduced = []
    monkeypatch.setattr(evaluate, "_distributed", lambda: True)
    monkeypatch.setattr(evaluate.dist, "all_reduce", lambda t: reduced.append(t.device))
    totals = evaluator.totals(MeanModel(), META, rank=1, world=2)
    assert totals.device == META and reduced == [META]  # no read before the all-reduce, and that on the device
    # on the CPU the numbers themselves: rank 1 of 2 has batches 1 and 3 (rows 3-5 and 9)
    # on the CPU, the numbers: the model predicts every label, at a loss of 1/5
    assert evaluator.run(MeanModel(), CPU, rank=1, world=2) == {"mlm_acc": 1.0, "eval_loss": pytest.approx(0.2)}
    assert reduced[-1] == CPU


def test_the_squad_evaluation_keeps_its_logits_on_the_device(synth_dir):
    from scaling_study.data.squad import read_squad
    from scaling_study.models import load_tokenizer

    examples = read_squad(synth_dir / "dev.json")[:6]
    evaluator = evaluate.SquadEvaluator(examples, load_tokenizer("tiny"), max_seq_length=64, doc_stride=16,
                                        max_query_length=24, n_best_size=5, max_answer_length=10, batch_size=4)
    start, end = evaluator.logits(MeanModel(), META, rank=0, world=2)
    n = len(range(0, len(evaluator.dataset), 2))
    assert start.device == end.device == META and start.shape == (n, 64)


# --- the micro-batches: a DataLoader, resumed exactly, masked by position -------------------

class Counted(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset, self.reads = dataset, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.reads += 1
        return self.dataset[i]


@pytest.fixture(scope="module")
def mlm_data(tmp_path_factory):
    """An MLM task of 20 blocks (2 micro-batches of 8 an epoch) masked by a collator."""
    from scaling_study.data.mlm import mlm_collator, text_dataset
    from scaling_study.models import load_tokenizer

    tok = load_tokenizer("tiny")
    path = tmp_path_factory.mktemp("mlm") / "corpus.txt"
    path.write_text("\n".join(f"line {i} tells of harbour {i % 7} and its {i} boats" for i in range(200)))
    blocks = torch.utils.data.Subset(text_dataset([path], tok, 16), range(20))
    return TaskData({16: Counted(blocks)}, {0: mlm_collator(tok, max_predictions=3)}, evaluator=None)


MLM_PHASE = Phase(index=0, steps=9, seq_len=16, per_worker_batch=8, grad_accum=1, global_batch=8, warmup=0, lr=0.1)


def stream(data, n, **kw):
    batches = data.micro_batches(MLM_PHASE, rank=0, world=1, seed=3, device=CPU, **kw)
    return [next(batches) for _ in range(n)]


def same(a: list, b: list) -> bool:
    return [(x.epoch, x.consumed) for x in a] == [(x.epoch, x.consumed) for x in b] and all(
        x.tensors.keys() == y.tensors.keys() and all(torch.equal(x.tensors[k], y.tensors[k]) for k in x.tensors)
        for x, y in zip(a, b))


def test_micro_batches_resume_exactly_and_mask_the_same_with_loader_processes(mlm_data, monkeypatch):
    rng = torch.get_rng_state()
    whole = stream(mlm_data, 7)  # 3.5 epochs
    assert [(b.epoch, b.consumed) for b in whole] == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2), (3, 1)]
    assert torch.equal(torch.get_rng_state(), rng), "reading batches must not draw from the global RNG"
    assert all((b.tensors["labels"] != -100).sum(1).le(3).all() for b in whole)
    assert not torch.equal(whole[0].tensors["labels"], whole[2].tensors["labels"])  # reshuffled, re-masked

    mlm_data.train_sets[16].reads = 0
    resumed = stream(mlm_data, 4, epoch=1, consumed=1)
    assert same(resumed, whole[3:])
    assert mlm_data.train_sets[16].reads == 4 * 8, "the consumed micro-batch was read again"

    monkeypatch.setitem(tasks.LOADER_WORKERS, "cpu", 2)
    assert same(stream(mlm_data, 7), whole), "loader processes mask differently"


# --- DDP broadcasts no buffers: BERT's are constants --------------------------------------

@pytest.mark.parametrize("task", ["squad", "mlm"])
def test_training_writes_no_buffer_of_the_models(task):
    from scaling_study.models import build_model, load_tokenizer
    from scaling_study.train.setup import DDP_KWARGS

    assert False in (DDP_KWARGS.get("forward_sync_buffers"), DDP_KWARGS.get("broadcast_buffers"))
    model = build_model("tiny", task, load_tokenizer("tiny"), seed=0).train()
    before = {name: b.clone() for name, b in model.named_buffers()}
    assert before, "the models have buffers (position and token type ids)"
    ids = torch.randint(1000, 2000, (2, 16))
    targets = ({"start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([3, 4])} if task == "squad"
               else {"labels": torch.where(ids % 4 == 0, ids, torch.full_like(ids, -100))})
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(2):
        model(input_ids=ids, attention_mask=torch.ones_like(ids), **targets).loss.backward()
        opt.step()
    for name, b in model.named_buffers():
        assert torch.equal(b, before[name]), name
