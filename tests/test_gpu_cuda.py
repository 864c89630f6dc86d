"""The training step, the evaluation and the data on a CUDA GPU: no host synchronisation in a
step or an evaluation (torch raises on any), CUDA-event step times, pinned micro-batches equal to
the CPU's, bf16 and fp16 steps of a tiny BERT, and the device rules on a real GPU. Every test here
needs a GPU and skips without one; `test_gpu_async.py` checks what it can of the same on the CPU.
"""
import contextlib
import math

import pytest
import torch

from test_gpu_async import MLM_PHASE, PHASE, MeanModel, mlm_data, same, stream, toy_batches, toy_state  # noqa: F401

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda", 0)


@contextlib.contextmanager
def no_host_sync():
    """torch raises on any synchronising call (a .item(), a blocking copy) inside."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("optimizer", ["lamb", "adamw"])
def test_a_cuda_step_never_waits_for_the_gpu_and_times_itself_with_events(optimizer):
    state = toy_state(CUDA, optimizer, max_grad_norm=1.0)  # clipping included
    batches = toy_batches(CUDA)
    state.step(PHASE, batches)  # the first step allocates the optimizer's state (and compiles kernels)
    state.settle()
    ready = iter([next(batches) for _ in range(6)])  # the copies to the GPU are not the step's
    with no_host_sync():
        losses = [state.step(PHASE, ready) for _ in range(3)]
    assert all(loss.device.type == "cuda" for loss in losses)
    assert state.settle() == pytest.approx(sum(float(x) for x in losses) / 3)
    t = state.window.times
    assert state.window.steps == 4 and all(math.isfinite(v) and v >= 0 for v in t.values())
    assert t["total"] == pytest.approx(t["compute"] + t["optimizer"], abs=1e-5) and t["total"] > 0


def test_mlm_accuracy_and_evaluation_never_wait_for_the_gpu():
    from scaling_study.data.dataset import TensorDictDataset
    from scaling_study.data.mlm import at_masked_positions, mlm_accuracy
    from scaling_study.train.evaluate import MlmEvaluator

    ids = torch.arange(40).view(10, 4)
    labels = torch.where(ids % 3 == 0, ids % 5, torch.full_like(ids, -100))
    mask = labels != -100
    logits = torch.randn(10, 4, 5)
    positions, at_labels = at_masked_positions(labels, 2)  # the product's fixed-width layout
    at_masked = logits.gather(1, positions[..., None].expand(-1, -1, 5))
    evaluator = MlmEvaluator(TensorDictDataset({"input_ids": ids, "labels": labels}), batch_size=3)
    evaluator.totals(MeanModel(), CUDA, rank=0, world=1)  # pins its batches once
    on_gpu = [x.to(CUDA) for x in (logits, at_masked, labels, at_labels)]
    with no_host_sync():
        full = mlm_accuracy(on_gpu[0], on_gpu[2])
        gathered = mlm_accuracy(on_gpu[1], on_gpu[3])
        totals = evaluator.totals(MeanModel(), CUDA, rank=0, world=1)
    expected = (int((logits.argmax(-1) == labels)[mask].sum()), int(mask.sum()))
    assert tuple(int(x) for x in full) == tuple(int(x) for x in gathered) == expected
    assert totals.device.type == "cuda" and totals[1].item() == expected[1]


def test_micro_batches_arrive_on_the_gpu_equal_to_the_cpus(mlm_data):  # noqa: F811
    on_cpu = stream(mlm_data, 5)
    batches = mlm_data.micro_batches(MLM_PHASE, rank=0, world=1, seed=3, device=CUDA)
    on_gpu = [next(batches) for _ in range(5)]
    assert all(t.device == CUDA for b in on_gpu for t in b.tensors.values())
    back = [b._replace(tensors={k: v.cpu() for k, v in b.tensors.items()}) for b in on_gpu]
    assert same(back, on_cpu)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_tiny_bert_trains_on_the_gpu_in_mixed_precision(synth_dir, precision):
    from conftest import tiny_job_data
    from scaling_study.config import job_from_dict
    from scaling_study.train.devices import worker_device
    from scaling_study.train.setup import build_worker
    from scaling_study.train.tasks import DataFiles

    job = job_from_dict(tiny_job_data(synth_dir, scaling={"num_workers": 0, "use_gpu": True},
                                      train={"precision": precision, "steps": 4}))
    device = worker_device(job, local=True)
    assert device.type == "cuda"
    state, task, plan = build_worker(job, DataFiles([synth_dir / "train.json"], [synth_dir / "dev.json"]),
                                     rank=0, world=1, device=device)
    assert (state.scaler is not None) == (precision == "fp16")
    phase = plan.phases[0]
    batches = task.micro_batches(phase, rank=0, world=1, seed=0, device=device)
    for _ in range(phase.steps):
        state.step(phase, batches)
    assert math.isfinite(state.settle()) and state.window.throughput() > 0
    metrics = task.evaluator.run(state.module, device, rank=0, world=1, autocast=state.autocast)
    assert 0 <= metrics["f1"] <= 100


def test_this_gpu_takes_bf16_as_autocast_does():
    from pathlib import Path

    from conftest import tiny_job_data
    from scaling_study.config import job_from_dict
    from scaling_study.errors import ConfigError
    from scaling_study.train.devices import check_precision

    job = job_from_dict(tiny_job_data(Path("/d"), scaling={"num_workers": 0, "use_gpu": True},
                                      train={"precision": "bf16"}))
    if torch.cuda.is_bf16_supported():
        check_precision(job, CUDA)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pass
    else:
        with pytest.raises(ConfigError, match="train.precision"):
            check_precision(job, CUDA)
